"""Splits from user-supplied list files (``split.protocol: lists``).

The format many hashing repositories share (e.g. the HashNet COCO / NUS-WIDE lists): one line per
image, the image path followed by its 0/1 label vector, separated by whitespace::

    train2014/COCO_train2014_000000000009.jpg 0 0 1 0 ... 1

Keys (``split``): ``train_list``, ``query_list``, ``database_list`` (list files; relative to the
working directory unless absolute) and optional ``class_names`` (a list, or the path of a text
file with one name per line; default ``class_0`` … ``class_{C-1}``). Every line of every file must
have the same number C of labels. Paths are kept exactly as written (they may contain spaces: the
last C tokens of a line are the labels) and are relative to ``image_root = source.root``, or
``source.images`` when there is no root, or the working directory when neither is set.

Rows are train, then query, then database, each in file order; ``ids`` are the running row index
0..N-1 (list files carry no image ids). A path listed more than once (within or across lists) stays
as separate rows, counted in a warning and in the attr ``n_duplicate_paths``. The protocol is
recorded as ``lists:<train>,<query>,<database>`` (file basenames).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.split_table import QUERY, RETRIEVAL, TRAIN, SplitTable

log = logging.getLogger("pipeline.datasets.lists")

#: (split key, split code) in row order
LIST_KEYS: tuple[tuple[str, int], ...] = (("train_list", TRAIN), ("query_list", QUERY),
                                          ("database_list", RETRIEVAL))


def _trailing_labels(tokens: list[str]) -> int:
    n = 0
    for t in reversed(tokens[1:]):
        if t not in ("0", "1"):
            break
        n += 1
    return n


def read_list(path: str | os.PathLike, n_labels: int | None = None
              ) -> tuple[list[str], np.ndarray]:
    """Read one list file → (paths, uint8 labels (N, C)).

    Args:
        path: the list file.
        n_labels: C (default: the number of trailing 0/1 tokens of the first line).

    Raises:
        ValueError: a line without a path or with another number of 0/1 labels (names file:line).
    """
    path = Path(path)
    paths: list[str] = []
    rows: list[list[int]] = []
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            if n_labels is None:
                n_labels = _trailing_labels(line.split())
                if n_labels == 0:
                    raise ValueError(f"{path}:{no}: expected an image path followed by 0/1 "
                                     f"labels, got {line[:80]!r}")
            parts = line.rsplit(maxsplit=n_labels)
            if len(parts) != n_labels + 1 or _trailing_labels(line.split()) != n_labels:
                raise ValueError(f"{path}:{no}: expected an image path followed by {n_labels} "
                                 f"labels 0/1, got {line[:80]!r}")
            paths.append(parts[0])
            rows.append([p == "1" for p in parts[1:]])
    if not paths:
        raise ValueError(f"{path}: empty list file")
    return paths, np.asarray(rows, dtype=np.uint8).reshape(len(paths), n_labels or 0)


def _class_names(spec: Any, n: int) -> list[str]:
    if spec is None:
        return [f"class_{i}" for i in range(n)]
    if isinstance(spec, (str, os.PathLike)):
        names = [s.strip() for s in Path(spec).read_text(encoding="utf-8").splitlines()
                 if s.strip()]
        where = str(spec)
    else:
        names, where = [str(s) for s in spec], "split.class_names"
    if len(names) != n:
        raise ValueError(f"{where}: {len(names)} class names for {n} label columns")
    return names


def build_split(source: dict[str, Any], split: dict[str, Any]) -> SplitTable:
    """Build a split from the three list files named in ``split`` (see the module docstring)."""
    missing = [f"  split.{k}: {split.get(k)}" for k, _ in LIST_KEYS
               if not split.get(k) or not Path(split[k]).is_file()]
    if missing:
        raise FileNotFoundError("lists: missing list file(s):\n" + "\n".join(missing))
    all_paths: list[str] = []
    labels, codes = [], []
    n_labels: int | None = None
    for key, code in LIST_KEYS:
        paths, lab = read_list(split[key], n_labels)
        n_labels = lab.shape[1]
        all_paths += paths
        labels.append(lab)
        codes.append(np.full(len(paths), code, dtype=np.uint8))
        log.info("lists: %s: %d images, %d labels", split[key], len(paths), n_labels)
    assert n_labels is not None
    n_dup = len(all_paths) - len(set(all_paths))
    if n_dup:
        log.warning("lists: %d rows repeat an image path already listed (kept as separate rows)",
                    n_dup)
    image_root = source.get("root") or source.get("images") or ""
    protocol = "lists:" + ",".join(Path(split[k]).name for k, _ in LIST_KEYS)
    return SplitTable(np.arange(len(all_paths), dtype=np.int64),
                      np.asarray(all_paths, dtype=object), np.concatenate(labels),
                      np.concatenate(codes), _class_names(split.get("class_names"), n_labels),
                      str(image_root), protocol, {"n_duplicate_paths": n_dup})
