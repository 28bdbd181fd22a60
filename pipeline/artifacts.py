"""Self-describing HDF5 artifacts: the one place that writes and reads the pipeline's files.

Every file the pipeline writes follows ``docs/artifacts.md``:

* root attrs ``encoding-type = "lagnh-artifact"`` and ``encoding-version``, plus provenance:
  ``stage`` (what produced it), ``created`` (UTC ISO time), ``package_version``, ``n_rows`` and
  whatever config values matter for that stage (``attrs=`` of :func:`write_h5`);
* plainly named datasets (``ids``, ``features``, ``labels``, ``aux_labels``, ``codes`` …) whose
  first axis is the row (image) axis, labelled ``image`` through HDF5 dimension labels;
* row-aligned chunks of about 1 MiB, ``shuffle`` + ``gzip`` for numbers;
* every write goes to a temporary file in the same folder that is renamed over the target only
  when complete, so a crash never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Self

import h5py
import numpy as np

ENCODING_TYPE = "lagnh-artifact"
ENCODING_VERSION = "1.0"
_CHUNK_BYTES = 1 << 20


def package_version() -> str:
    """Version of the installed ``lagnh-pipeline`` (``"unknown"`` when run from a bare tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lagnh-pipeline")
    except PackageNotFoundError:
        return "unknown"


def _encode_attr(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float, np.integer, np.floating, np.bool_)):
        return value
    if value is None:
        return "null"
    if isinstance(value, Path):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)


def _decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{" and value[-1:] in "]}":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def row_chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...] | None:
    """Chunk shape of about 1 MiB that holds whole rows (``None`` for an empty array)."""
    if not shape or shape[0] == 0:
        return None
    row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * itemsize)
    rows = int(max(1, min(shape[0], _CHUNK_BYTES // row_bytes)))
    return (rows, *shape[1:])


def _string_dtype() -> Any:
    return h5py.string_dtype(encoding="utf-8")


def _create(f: h5py.File, name: str, arr: np.ndarray | None, *, shape=None, dtype=None,
            maxshape=None, compression: str | None = "gzip") -> h5py.Dataset:
    if arr is not None:
        arr = np.asarray(arr)
        if arr.dtype.kind in "OUS":
            arr = np.asarray([str(s) for s in arr.tolist()], dtype=object)
            return f.create_dataset(name, data=arr, dtype=_string_dtype())
        shape, dtype = arr.shape, arr.dtype
    dtype = np.dtype(dtype)
    chunks = row_chunks(tuple(maxshape or shape) if maxshape and maxshape[0] else tuple(shape),
                        dtype.itemsize)
    if maxshape is not None and chunks is None:
        chunks = (1024, *shape[1:])
    kw: dict[str, Any] = {}
    if chunks is not None and compression:
        kw = {"compression": compression, "shuffle": True}
    ds = f.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks, maxshape=maxshape, **kw)
    if arr is not None and arr.size:
        ds[...] = arr
    return ds


def _label_dims(ds: h5py.Dataset) -> None:
    if ds.ndim >= 1:
        ds.dims[0].label = "image"
    if ds.ndim >= 2:
        ds.dims[1].label = {"features": "feature", "codes": "byte"}.get(
            ds.name.strip("/"), "class")


def _root_attrs(f: h5py.File, stage: str, n_rows: int, attrs: Mapping[str, Any]) -> None:
    f.attrs["encoding-type"] = ENCODING_TYPE
    f.attrs["encoding-version"] = ENCODING_VERSION
    f.attrs["stage"] = stage
    f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    f.attrs["package_version"] = package_version()
    f.attrs["n_rows"] = int(n_rows)
    for key, value in attrs.items():
        f.attrs[key] = _encode_attr(value)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    On any exception the temporary file is removed and nothing is left at ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as JSON atomically (:func:`atomic_path`), keys sorted; NaN or infinity is
    refused (``ValueError``) rather than written as the non-standard ``NaN``."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n")


def write_h5(path: str | os.PathLike, datasets: Mapping[str, np.ndarray], *, stage: str,
             attrs: Mapping[str, Any] | None = None,
             dataset_attrs: Mapping[str, Mapping[str, Any]] | None = None,
             compression: str | None = "gzip") -> Path:
    """Write ``datasets`` (name → array, rows first) to ``path`` atomically with provenance attrs.

    All datasets with a first axis must have the same number of rows; ``ids`` is required.
    """
    if "ids" not in datasets:
        raise ValueError(f"{path}: an artifact needs an 'ids' dataset to align rows by")
    n_rows = len(datasets["ids"])
    for name, arr in datasets.items():
        if np.ndim(arr) >= 1 and len(arr) != n_rows and not name.startswith("meta_"):
            raise ValueError(
                f"{path}: dataset '{name}' has {len(arr)} rows but 'ids' has {n_rows}; "
                "rows must be aligned")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        _root_attrs(f, stage, n_rows, attrs or {})
        for name, arr in datasets.items():
            ds = _create(f, name, arr, compression=compression)
            if not name.startswith("meta_"):
                _label_dims(ds)
            for k, v in (dataset_attrs or {}).get(name, {}).items():
                ds.attrs[k] = _encode_attr(v)
    return Path(path)


def partial_path(path: str | os.PathLike) -> Path:
    """Where a resumable :class:`RowWriter` keeps rows until complete: ``.NAME.partial`` beside
    ``path`` (hidden, and not a declared output, so a workflow manager leaves it after a crash)."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def _fingerprint(resume_key: Mapping[str, Any], stage: str, n_rows: int, ids: np.ndarray,
                 columns: Mapping[str, tuple[tuple[int, ...], Any]]) -> dict[str, Any]:
    ids = np.ascontiguousarray(np.asarray(ids))
    return {"key": json.loads(json.dumps(dict(resume_key), sort_keys=True, default=str)),
            "stage": stage, "n_rows": int(n_rows),
            "ids_sha256": hashlib.sha256(ids.dtype.str.encode() + ids.tobytes()).hexdigest(),
            "columns": {name: [list(tail), np.dtype(dtype).str]
                        for name, (tail, dtype) in columns.items()}}


def _key_difference(old: Any, new: dict[str, Any]) -> str:
    """Names of the fingerprint entries that differ (``key.image_size``, ``ids_sha256`` …)."""
    if not isinstance(old, dict):
        return "no readable fingerprint"
    names = [f"key.{k}" for k in sorted(set(old.get("key", {})) | set(new["key"]))
             if old.get("key", {}).get(k) != new["key"].get(k)]
    names += [k for k in ("stage", "n_rows", "ids_sha256", "columns") if old.get(k) != new[k]]
    return ", ".join(names) or "unknown"


class PartialFile:
    """The life of a resumable partial file, shared by :class:`RowWriter` and
    :class:`pipeline.detectors.store.DetectionWriter`.

    The file lives at :attr:`tmp` (:func:`partial_path`) and carries, besides its data, the root
    attr ``resume-key`` (a fingerprint string of everything the data depend on) and counters of
    what is committed (:attr:`COUNTERS`; the first counts rows and is kept in :attr:`rows_done`).
    The three steps: :meth:`_open_partial` reopens a file with the same fingerprint and valid
    counters or deletes any other, :meth:`_record` commits the counters after the data, and
    :meth:`close` publishes the complete file onto :attr:`path`.
    """

    #: root attrs counting what is committed; the first counts rows
    COUNTERS: tuple[str, ...] = ("rows-complete",)
    #: what the rows are called in :attr:`resume_note`
    ROWS = "rows"
    #: why :meth:`close` refuses an incomplete file: "only X of N <INCOMPLETE>"
    INCOMPLETE = "rows were committed"

    path: Path
    tmp: Path
    n_rows: int
    f: h5py.File
    rows_done: int
    resume_note: str

    def _open_partial(self, key: str) -> tuple[h5py.File, list[int]] | None:
        """The partial file and its counters if it was made with fingerprint ``key`` and its
        counters are valid; else delete it (if any) and say why in :attr:`resume_note`."""
        if not self.tmp.exists():
            return None
        try:
            f = h5py.File(self.tmp, "r+")
        except OSError as e:
            self.resume_note = f"discarded unreadable partial file {self.tmp} ({e})"
        else:
            old = f.attrs.get("resume-key")
            old = old.decode() if isinstance(old, bytes) else old
            counts = [int(f.attrs.get(name, -1)) for name in self.COUNTERS]
            if old == key and 0 <= counts[0] <= self.n_rows and self._counts_valid(f, counts):
                self.resume_note = (f"resuming from partial file {self.tmp}: {counts[0]} of "
                                    f"{self.n_rows} {self.ROWS} already complete")
                return f, counts
            f.close()
            self.resume_note = (f"discarded partial file {self.tmp}: "
                                f"{self._mismatch(_decode_attr(old))}")
        self.tmp.unlink()
        return None

    def _counts_valid(self, f: h5py.File, counts: list[int]) -> bool:
        """Whether counters besides the rows' fit the reopened file ``f`` (a subclass' check)."""
        return True

    def _mismatch(self, old_key: Any) -> str:
        """Why a partial file is not resumed, given its fingerprint ``old_key`` (JSON decoded;
        ``None`` if it has none)."""
        return "made with another config"

    def _record(self, *counts: int) -> None:
        """Commit: flush the data, then record ``counts`` in :attr:`COUNTERS` (a kill in between
        leaves counts too low, never too high)."""
        self.f.flush()
        for name, n in zip(self.COUNTERS, counts, strict=True):
            self.f.attrs[name] = int(n)
        self.f.flush()

    def _finish(self) -> None:
        """Last touches to a complete file before it is published (a subclass' hook)."""

    def close(self, ok: bool = True) -> None:
        """Publish the complete file onto :attr:`path` (``ok``), else keep it for a rerun.

        Publishing drops the bookkeeping attrs, closes and fsyncs the file and renames it onto
        :attr:`path`; with rows not all committed it raises ``ValueError`` and keeps the file.
        """
        if not self.f:
            return
        if not ok:
            self.f.close()
            return
        if self.rows_done != self.n_rows:
            self.f.close()
            raise ValueError(f"{self.path}: only {self.rows_done} of {self.n_rows} "
                             f"{self.INCOMPLETE}; the partial file {self.tmp} is kept for a rerun")
        self._finish()
        for name in ("resume-key", *self.COUNTERS):
            del self.f.attrs[name]
        self.f.close()
        with open(self.tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.path)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)


class RowWriter(PartialFile):
    """Stream rows into datasets of a known final length; the file appears only on :meth:`close`.

    With ``resume_key`` (a JSON-able mapping of everything the rows depend on) the rows go to
    :func:`partial_path` instead of a per-process temporary file, and that file survives a crash
    or kill. :meth:`commit` flushes the rows written so far and records their count in the root
    attr ``rows-complete``. A later writer with the same ``resume_key``, stage, ``ids``, row count
    and columns reopens the file and reports the count as :attr:`rows_done`, so the caller can go
    on from there; any other partial file (another config, unreadable) is deleted and the reason
    kept in :attr:`resume_note`. :meth:`close` renames the file onto ``path`` atomically once
    every row is committed, and keeps it for the next attempt otherwise. Without ``resume_key``
    nothing changes: a failed writer leaves nothing behind.

    >>> # with RowWriter(p, n_rows=10, stage="features", columns={"features": ((4,), "f4")},
    >>> #                ids=np.arange(10)) as w: w.write(0, {"features": x[:5]}) ...
    """

    def __init__(self, path: str | os.PathLike, *, n_rows: int, stage: str, ids: np.ndarray,
                 columns: Mapping[str, tuple[tuple[int, ...], Any]],
                 attrs: Mapping[str, Any] | None = None,
                 compression: str | None = "gzip",
                 resume_key: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.n_rows = int(n_rows)
        #: rows already committed by an earlier, interrupted writer (0 unless resumed)
        self.rows_done = 0
        #: what happened to an existing partial file ("" when there was none)
        self.resume_note = ""
        self.resumable = resume_key is not None
        if resume_key is None:
            self._ctx = atomic_path(self.path)
            self.tmp = self._ctx.__enter__()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = partial_path(self.path)
            self._key = _fingerprint(resume_key, stage, n_rows, ids, columns)
            reopened = self._open_partial(json.dumps(self._key, sort_keys=True))
            if reopened is not None:
                self.f, (self.rows_done,) = reopened
                _root_attrs(self.f, stage, n_rows, attrs or {})
                return
        self.f = h5py.File(self.tmp, "w")
        _root_attrs(self.f, stage, n_rows, attrs or {})
        _label_dims(_create(self.f, "ids", np.asarray(ids)))
        for name, (tail, dtype) in columns.items():
            _label_dims(_create(self.f, name, None, shape=(n_rows, *tail), dtype=dtype,
                                compression=compression))
        if self.resumable:
            self.f.attrs["resume-key"] = json.dumps(self._key, sort_keys=True)
            self.commit(0)

    def _mismatch(self, old_key: Any) -> str:
        """Names the fingerprint entries that differ (``key.image_size`` …)."""
        return f"made with another config (differs in {_key_difference(old_key, self._key)})"

    def write(self, start: int, rows: Mapping[str, np.ndarray]) -> None:
        """Write ``rows`` (name → array) from row ``start`` on."""
        for name, arr in rows.items():
            self.f[name][start:start + len(arr)] = arr

    def read(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``start:stop`` of dataset ``name`` as written so far (e.g. by a resumed run)."""
        return self.f[name][start:stop]

    def commit(self, rows_done: int) -> None:
        """Make rows ``0:rows_done`` durable: flush them, then record ``rows-complete``.

        Data are flushed before the count, so a kill in between leaves a count that is too low,
        never one that is too high. A no-op besides the flush without ``resume_key``.
        """
        if self.resumable:
            self._record(rows_done)
        else:
            self.f.flush()
        self.rows_done = int(rows_done)

    def set_attrs(self, **attrs: Any) -> None:
        """Set root attrs (JSON-encoded where needed)."""
        for k, v in attrs.items():
            self.f.attrs[k] = _encode_attr(v)

    def close(self, ok: bool = True) -> None:
        """Close the file; with ``ok`` move it onto :attr:`path`, else discard it (or, when
        resumable, keep it for the next attempt). A resumable writer whose rows are not all
        committed raises ``ValueError`` instead of publishing a partial result."""
        if not self.resumable:
            self.f.close()
            if ok:
                self._ctx.__exit__(None, None, None)
            else:
                try:
                    self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)
                except RuntimeError:
                    pass
            return
        super().close(ok)


def _open(path: str | os.PathLike) -> h5py.File:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: artifact not found; build it with `snakemake --cores 4 {path}`")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise OSError(f"{path}: not a readable HDF5 file ({e}); delete it and rerun") from e
    if f.attrs.get("encoding-type") != ENCODING_TYPE:
        f.close()
        raise ValueError(f"{path}: not a lagnh-pipeline artifact (no encoding-type attr)")
    version = str(f.attrs.get("encoding-version"))
    if version.split(".")[0] != ENCODING_VERSION.split(".")[0]:
        f.close()
        raise ValueError(f"{path}: encoding-version {version} is not readable by this "
                         f"version ({ENCODING_VERSION}); rerun the stage that made it")
    return f


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """Root attrs of an artifact, JSON values decoded."""
    with _open(path) as f:
        return {k: _decode_attr(v) for k, v in f.attrs.items()}


def read_h5(path: str | os.PathLike, names: list[str] | None = None, *,
            stage: str | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read datasets (all, or ``names``) and root attrs; strings come back as ``str`` arrays.

    Raises a clear error when the file is missing, is not an artifact, was made by another
    ``stage`` than expected, or lacks a requested dataset.
    """
    with _open(path) as f:
        attrs = {k: _decode_attr(v) for k, v in f.attrs.items()}
        if stage is not None and attrs.get("stage") != stage:
            raise ValueError(f"{path}: expected an artifact of stage '{stage}', "
                             f"found stage '{attrs.get('stage')}'")
        names = list(f.keys()) if names is None else names
        out: dict[str, np.ndarray] = {}
        for name in names:
            if name not in f:
                raise KeyError(f"{path}: has no dataset '{name}' (it has {sorted(f.keys())})")
            ds = f[name]
            if h5py.check_string_dtype(ds.dtype) is not None:
                out[name] = ds.asstr()[...].astype(str)
            else:
                out[name] = ds[...]
    return out, attrs


def check_aligned(ids_a: np.ndarray, ids_b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` naming both files unless their ``ids`` match row for row."""
    if len(ids_a) != len(ids_b):
        raise ValueError(f"row mismatch: {name_a} has {len(ids_a)} rows, {name_b} has "
                         f"{len(ids_b)}; rebuild the older one")
    if not np.array_equal(np.asarray(ids_a), np.asarray(ids_b)):
        bad = int(np.flatnonzero(np.asarray(ids_a) != np.asarray(ids_b))[0])
        raise ValueError(f"row mismatch: {name_a} and {name_b} differ in ids from row {bad} "
                         f"({ids_a[bad]} vs {ids_b[bad]}); rebuild the older one")


def describe(path: str | os.PathLike) -> str:
    """Human-readable schema, attrs and summary statistics of an artifact (``pipeline inspect``)."""
    lines = [f"{path}"]
    with _open(path) as f:
        lines.append("attrs:")
        for k, v in sorted(f.attrs.items()):
            text = str(_decode_attr(v))
            lines.append(f"  {k}: {text if len(text) < 200 else text[:197] + '...'}")
        lines.append("datasets:")
        for name, ds in f.items():
            dims = ",".join(d.label or "?" for d in ds.dims)
            comp = f" {ds.compression}" if ds.compression else ""
            lines.append(f"  {name}: shape={ds.shape} dtype={ds.dtype} dims=({dims}) "
                         f"chunks={ds.chunks}{comp}")
            if h5py.check_string_dtype(ds.dtype) is not None:
                head = ds.asstr()[: min(3, len(ds))]
                lines.append(f"    first: {list(head)}")
                continue
            if ds.size == 0:
                continue
            sample = ds[: min(len(ds), 200_000)].astype(np.float64)
            lines.append(
                f"    min={sample.min():.4g} max={sample.max():.4g} mean={sample.mean():.4g} "
                f"std={sample.std():.4g} nan={int(np.isnan(sample).sum())}"
                + ("" if len(ds) <= 200_000 else " (first 200000 rows)"))
            if ds.dtype == np.uint8 and ds.ndim == 2 and name != "codes":
                lines.append(f"    row sums: mean={sample.sum(1).mean():.3g} "
                             f"zero rows={int((sample.sum(1) == 0).sum())}")
    return "\n".join(lines)
