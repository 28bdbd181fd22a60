"""Split-time check of a split's image files (``split.missing_images``).

A collection as shipped may lack some of the images its annotations list (NUS-WIDE's image
list names files that were never distributed or are empty). :func:`find_unusable` finds, before
any image is decoded, the files that are missing, empty or whose header PIL cannot read;
:func:`apply_policy` then drops their rows (``drop``, counted in split.h5's attrs) or stops
with the option named (``error``). When not one listed image exists (the folder is not there
yet) nothing is checked: the ``features`` stage refuses missing files later, naming the option.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

log = logging.getLogger("pipeline.split")

#: what an unusable file is, in the order checked
REASONS = ("missing", "empty", "unreadable")


def image_problem(path: str | os.PathLike) -> str | None:
    """``"missing"``, ``"empty"`` (0 bytes), ``"unreadable"`` (PIL cannot read its header), or
    ``None`` for a usable file. Reads only the header, never the pixels."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return "missing"
    if size == 0:
        return "empty"
    try:
        with Image.open(path):
            pass
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return "unreadable"
    return None


def find_unusable(root: str | os.PathLike, paths: Sequence[str],
                  progress: bool = True) -> dict[int, str]:
    """Row index → reason for every path (relative to ``root``) that is not a usable image."""
    root = Path(root)
    found: dict[int, str] = {}
    for i, p in enumerate(tqdm(paths, desc="check images", unit="file", mininterval=10,
                               disable=not progress)):
        reason = image_problem(root / str(p))
        if reason is not None:
            found[i] = reason
    return found


def apply_policy(root: str | os.PathLike, paths: Sequence[str], policy: str,
                 where: str = "split") -> tuple[np.ndarray, dict[str, Any]]:
    """Check ``paths`` under ``root`` and apply ``split.missing_images``.

    Returns:
        ``(keep, attrs)``: a bool mask over ``paths`` (all True unless ``drop`` removed rows)
        and split.h5 attrs: ``missing_images`` (the policy), ``missing_images_checked``,
        ``n_dropped_images`` and one ``n_<reason>_files`` per reason.

    Raises:
        ValueError: ``policy`` is ``error`` and some file is unusable (names the option).
    """
    if policy not in ("drop", "error"):
        raise ValueError(f"split.missing_images must be 'drop' or 'error', not {policy!r}")
    keep = np.ones(len(paths), dtype=bool)
    attrs: dict[str, Any] = {"missing_images": policy, "missing_images_checked": True,
                             "n_dropped_images": 0, **{f"n_{r}_files": 0 for r in REASONS}}
    bad = find_unusable(root, paths)
    if paths and sum(r == "missing" for r in bad.values()) == len(paths):
        log.warning("%s: none of the %d images exists under %s (not there yet?): not checked; "
                    "the features stage needs them", where, len(paths), root)
        return keep, {**attrs, "missing_images_checked": False}
    for r in REASONS:
        attrs[f"n_{r}_files"] = sum(v == r for v in bad.values())
    if not bad:
        return keep, attrs
    counts = ", ".join(f"{attrs[f'n_{r}_files']} {r}" for r in REASONS if attrs[f"n_{r}_files"])
    examples = "; ".join(f"{paths[i]} ({r})" for i, r in list(bad.items())[:5])
    if policy == "error":
        raise ValueError(f"{where}: {len(bad)} of {len(paths)} image files under {root} cannot "
                         f"be used ({counts}), e.g. {examples}; restore them, or set "
                         "split.missing_images: drop to leave them out of the split")
    keep[list(bad)] = False
    attrs["n_dropped_images"] = len(bad)
    log.warning("%s: dropped %d of %d images that cannot be used (%s; split.missing_images: "
                "drop), e.g. %s", where, len(bad), len(paths), counts, examples)
    return keep, attrs
