"""Features from a user's file (``features: {backbone: file, path: ...}``) → ``features.h5``.

The file is an HDF5 file with a dataset ``features`` (N, D) and a dataset ``ids`` (N,
integers: the split's image ids) or ``paths`` (N, strings: image paths), or a NumPy ``.npz``
with the same keys. Every image of the split must have a row, matched by id when the file has
``ids``, else by path (the split's path relative to the images folder, or that folder joined
with it); rows of other images are ignored. The rows are written in the split's order as the
pipeline's normal ``features.h5`` (``valid`` = 1 everywhere), with the source file's path,
size and modification time in its attrs so that a changed file is visible.

HDF5 files are read one block of output rows at a time (the rows of a block are read in
increasing file order); an ``.npz`` is loaded whole (NumPy cannot read part of one).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from pipeline.artifacts import RowWriter, row_chunks

log = logging.getLogger("pipeline.feature_file")

#: output rows per block (about 64 MiB of 4,096-d float32)
_BLOCK_BYTES = 64 << 20
#: missing images named in an error
_SHOW = 10


class _Source:
    """The user's file: its row keys and random access to rows of ``features``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._h5: h5py.File | None = None
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files if k in ("features", "ids", "paths")}
            self.features: Any = data.get("features")
            keys = data
        else:
            try:
                self._h5 = h5py.File(path, "r")
            except OSError as e:
                raise ValueError(f"{path}: features.path is neither a readable HDF5 file nor "
                                 f"a .npz ({e}); give an HDF5 or .npz file") from e
            self.features = self._h5.get("features")
            keys = {k: (self._h5[k].asstr()[...] if k == "paths" else self._h5[k][...])
                    for k in ("ids", "paths") if k in self._h5}
        if self.features is None:
            raise ValueError(f"{path}: no 'features' dataset; the file needs 'features' (N, D) "
                             "and 'ids' or 'paths' (N)")
        if "ids" in keys:
            self.by, self.keys = "ids", np.asarray(keys["ids"])
            if self.keys.dtype.kind not in "iu":
                raise ValueError(f"{path}: 'ids' must be integers (the split's image ids), "
                                 f"got dtype {self.keys.dtype}")
        elif "paths" in keys:
            self.by, self.keys = "paths", np.asarray(keys["paths"]).astype(str)
        else:
            raise ValueError(f"{path}: neither 'ids' nor 'paths'; the file needs one of them "
                             "to match its rows to the split's images")
        shape = tuple(self.features.shape)
        if len(shape) != 2 or shape[0] != len(self.keys) or shape[1] == 0:
            raise ValueError(f"{path}: 'features' must be (N, D) with one row per entry of "
                             f"'{self.by}' ({len(self.keys)}), got shape {shape}")
        if np.dtype(self.features.dtype).kind not in "fiu":
            raise ValueError(f"{path}: 'features' must be numbers, got dtype "
                             f"{self.features.dtype}")
        if self.keys.ndim != 1:
            raise ValueError(f"{path}: '{self.by}' must be 1-D, got shape {self.keys.shape}")
        if len(np.unique(self.keys)) != len(self.keys):
            raise ValueError(f"{path}: '{self.by}' has duplicate entries; each image once")
        self.dim = int(shape[1])

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (any order) of ``features`` as float32."""
        if self._h5 is None:
            return np.asarray(self.features[idx], dtype=np.float32)
        order = np.argsort(idx, kind="stable")
        out = np.empty((len(idx), self.dim), np.float32)
        out[order] = self.features[np.sort(idx)]
        return out

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()


def match_rows(keys: np.ndarray, by: str, ids: np.ndarray, paths: np.ndarray, root: str,
               where: str) -> np.ndarray:
    """Row of the user's file for each split image (``keys`` are its ``ids`` or ``paths``).

    Raises:
        ValueError: naming the file, how many split images have no row, and the first of them.
    """
    pos = {k: i for i, k in enumerate(keys.tolist())}
    if by == "ids":
        wanted = [int(i) for i in ids]
        found = [pos.get(i, -1) for i in wanted]
    else:
        found = []
        for rel in paths:
            hit = pos.get(str(rel), -1)
            if hit < 0:
                hit = pos.get(os.path.normpath(os.path.join(root, str(rel))), -1)
            found.append(hit)
        wanted = [str(p) for p in paths]
    rows = np.asarray(found, dtype=np.int64)
    missing = np.flatnonzero(rows < 0)
    if len(missing):
        names = ", ".join(str(wanted[i]) for i in missing[:_SHOW])
        more = f" and {len(missing) - _SHOW} more" if len(missing) > _SHOW else ""
        raise ValueError(f"{where}: {len(missing)} of the split's {len(rows)} images have no "
                         f"row (matched by {by}): {names}{more}; add their features to the "
                         "file or leave them out of the split")
    return rows


def import_features(path: str | os.PathLike, ids: np.ndarray, paths: np.ndarray, root: str,
                    out: str | os.PathLike, attrs: dict[str, Any] | None = None) -> int:
    """Write the rows of the user's feature file ``path`` for the split's images (``ids``,
    ``paths`` relative to ``root``) to ``out`` in split order; returns the feature dimension.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file lacks ``features`` or ``ids``/``paths``, has a bad shape, misses
            split images, or holds a non-finite value in a row the split uses.
    """
    src_path = Path(path)
    if not src_path.exists():
        raise FileNotFoundError(f"{src_path}: features.path not found; point features.path "
                                "at your HDF5 or .npz feature file")
    src = _Source(src_path)
    try:
        where = str(src_path)
        rows = match_rows(src.keys, src.by, np.asarray(ids), np.asarray(paths), str(root), where)
        stat = src_path.stat()
        meta = {"backbone": "file", "layer": "file", "dim": src.dim,
                "source_file": str(src_path.resolve()), "source_size": int(stat.st_size),
                "source_mtime": _dt.datetime.fromtimestamp(
                    stat.st_mtime, _dt.timezone.utc).isoformat(timespec="seconds"),
                "matched_by": src.by, "n_source_rows": len(src.keys), "n_invalid": 0,
                **(attrs or {})}
        n = len(rows)
        step = int(max(1, _BLOCK_BYTES // (4 * src.dim)))
        step = max(step, (row_chunks((n, src.dim), 4) or (1,))[0])
        log.info("%s: %d of its %d rows matched by %s, %d-d", where, n, len(src.keys), src.by,
                 src.dim)
        with RowWriter(out, n_rows=n, stage="features", ids=np.asarray(ids),
                       columns={"features": ((src.dim,), np.float32), "valid": ((), np.uint8)},
                       attrs=meta) as w:
            for s in tqdm(range(0, n, step), desc="features from file", mininterval=10):
                block = src.rows(rows[s:s + step])
                bad = ~np.isfinite(block).all(axis=1)
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    raise ValueError(f"{where}: row {int(rows[s + i])} ({src.by} "
                                     f"{src.keys[rows[s + i]]}) of 'features' is not finite "
                                     "(NaN or inf); fix the file")
                w.write(s, {"features": block, "valid": np.ones(len(block), np.uint8)})
    finally:
        src.close()
    return src.dim
