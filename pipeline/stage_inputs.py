"""Loading the aligned inputs of the train and encode stages (split, features, aux labels).

At COCO scale ``features.h5`` holds 123,287 rows of 4,096 float32 (1.9 GiB) while training
needs its 5,000 training rows (80 MB). The features are therefore read by row blocks: a stage
asks for the rows it needs (:func:`read_feature_rows`), the file is read one slice of
:data:`BLOCK_BYTES` at a time, and only the wanted rows of each slice are kept, each checked
for finiteness as it arrives (no copy of the whole matrix, no whole-file temporary).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import h5py
import numpy as np
from tqdm import tqdm

from pipeline.artifacts import check_aligned, read_h5
from pipeline.methods import encode_group

#: bytes of features passed to one ``encode`` call by :func:`encode_rows`
ENCODE_BLOCK_BYTES = 256 << 20
#: bytes of one slice of ``features`` read at a time (rows rounded down, at least one row)
BLOCK_BYTES = 64 << 20


@dataclass
class StageInputs:
    ids: np.ndarray
    split: np.ndarray
    #: features of every row, or ``None`` when loaded with ``features=False``
    features: np.ndarray | None
    valid: np.ndarray
    aux: np.ndarray
    feature_attrs: dict
    protocol: str
    features_path: str = ""


def block_rows(row_bytes: int, block_bytes: int = BLOCK_BYTES) -> int:
    """Rows per slice of about ``block_bytes`` (at least 1)."""
    return max(1, int(block_bytes) // max(1, int(row_bytes)))


def read_feature_rows(path: str, rows: np.ndarray, *, valid: np.ndarray | None = None,
                      block_bytes: int = BLOCK_BYTES, name: str = "features") -> np.ndarray:
    """Rows ``rows`` (increasing row indices) of dataset ``name`` of ``path``, read by slices.

    The file is read one slice of about ``block_bytes`` at a time over the span of ``rows``;
    of each slice only the wanted rows are kept (in one preallocated output array) and checked
    for finiteness where ``valid`` (bool over all rows of the file) is true or not given. Rows
    that are not asked for are never checked, so a NaN there is no error.

    Raises:
        ValueError: a wanted valid row holds NaN or inf (names the file, the row and its id),
            ``rows`` are not increasing, or the dataset is not 2-D.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 1 or (len(rows) > 1 and (np.diff(rows) <= 0).any()):
        raise ValueError(f"{path}: rows to read must be increasing row indices")
    with h5py.File(path, "r") as f:
        ds = f[name]
        if ds.ndim != 2:
            raise ValueError(f"{path}: {name} must be a 2-D array (rows, dims), got shape "
                             f"{ds.shape}; rebuild it")
        n, dim = ds.shape
        if len(rows) and (rows[0] < 0 or rows[-1] >= n):
            raise ValueError(f"{path}: row {int(rows[-1])} asked for, but {name} has {n} rows")
        out = np.empty((len(rows), dim), dtype=ds.dtype)
        if not len(rows):
            return out
        step = block_rows(dim * ds.dtype.itemsize, block_bytes)
        chunk = ds.chunks[0] if ds.chunks else 1
        step = max(chunk, step - step % chunk)  # whole HDF5 chunks per slice
        lo = int(rows[0]) - int(rows[0]) % step
        pos = 0
        for a in range(lo, int(rows[-1]) + 1, step):
            b = min(a + step, n)
            end = int(np.searchsorted(rows, b, side="left"))
            if end == pos:
                continue
            want = rows[pos:end]
            block = ds[a:b]
            out[pos:end] = block[want - a]
            del block
            _check_finite(out[pos:end], want, valid, path, f)
            pos = end
    return out


def _check_finite(values: np.ndarray, rows: np.ndarray, valid: np.ndarray | None, path: str,
                  f: h5py.File) -> None:
    bad = ~np.isfinite(values).all(axis=1)
    if valid is not None:
        bad &= valid[rows]
    if bad.any():
        row = int(rows[np.flatnonzero(bad)[0]])
        ident = f["ids"][row] if "ids" in f else "?"
        raise ValueError(f"{path}: features of row {row} (id {ident}) are not finite (NaN or "
                         f"inf); {int(bad.sum())} such row(s) in this block; rebuild the "
                         "features file")


def load_inputs(split_path: str, features_path: str, aux_path: str, *,
                features: bool = True) -> StageInputs:
    """Read split, feature ids/flags and aux labels and check that their rows are the same images.

    With ``features=False`` the feature matrix is not read (``features`` is ``None``): the stage
    reads the rows it needs with :func:`read_feature_rows`. Otherwise every row is read, by
    blocks, checked as it arrives.
    """
    s, sattrs = read_h5(split_path, ["ids", "split"], stage="split")
    f, fattrs = read_h5(features_path, ["ids", "valid"], stage="features")
    x, _ = read_h5(aux_path, ["ids", "aux_labels"], stage="auxiliary")
    check_aligned(s["ids"], f["ids"], split_path, features_path)
    check_aligned(s["ids"], x["ids"], split_path, aux_path)
    valid = f["valid"].astype(bool)
    with h5py.File(features_path, "r") as h:
        shape = h["features"].shape
    if len(shape) != 2 or shape[0] != len(valid):
        raise ValueError(f"{features_path}: features must be a 2-D array with one row per id, "
                         f"got shape {shape} for {len(valid)} ids; rebuild it")
    feats = (read_feature_rows(features_path, np.arange(len(valid)), valid=valid)
             if features else None)
    return StageInputs(s["ids"], s["split"], feats, valid, x["aux_labels"], fattrs,
                       str(sattrs.get("protocol")), str(features_path))


def selected_features(inp: StageInputs, mask: np.ndarray, *,
                      block_bytes: int = BLOCK_BYTES) -> np.ndarray:
    """Features of the rows where ``mask`` is true, from memory or read by blocks."""
    if inp.features is not None:
        return inp.features[mask]
    return read_feature_rows(inp.features_path, np.flatnonzero(mask), valid=inp.valid,
                             block_bytes=block_bytes)


def encode_rows(module: ModuleType, state: dict, params: dict, features_path: str,
                idx: np.ndarray, aux: np.ndarray, valid: np.ndarray, *,
                block_bytes: int = ENCODE_BLOCK_BYTES) -> np.ndarray:
    """Codes (bool) of rows ``idx`` of ``features_path`` by ``module.encode``, read and encoded
    a block of about ``block_bytes`` at a time; a block holds a multiple of the method's
    :func:`~pipeline.methods.encode_group` rows, in file order, so the codes equal one call's."""
    with h5py.File(features_path, "r") as f:
        dim, itemsize = int(f["features"].shape[1]), f["features"].dtype.itemsize
    group = encode_group(module, state, params)
    step = block_rows(dim * itemsize, block_bytes)
    step = max(group, step - step % group)
    parts = []
    for s in tqdm(range(0, len(idx), step), desc="encode", mininterval=10):
        rows = idx[s:s + step]
        X = read_feature_rows(features_path, rows, valid=valid)
        parts.append(np.asarray(module.encode(state, X, aux[rows], params)))
        del X
    if not parts:
        empty = np.zeros((0, dim), np.float32)
        return np.asarray(module.encode(state, empty, aux[idx], params))
    return np.concatenate(parts)
