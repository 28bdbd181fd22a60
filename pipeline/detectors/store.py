"""``detections.h5``: a detector's outputs, streamed to disk, resumable, read back in blocks.

A detector's detections are ragged (a variable number per image), so the file holds

* per image (row, ``split.h5`` order): ``ids`` int64 (N); ``valid`` uint8 (N), 0 where the
  image could not be read (it has no detections); ``n_detections`` int32 (N);
* per detection, image by image (the detections of row *r* are the
  ``n_detections[:r].sum()``-th and following): ``det_row`` int32 (M), the image's row;
  ``det_category_id`` int32 (M), one of the ``categories`` attr's ids; ``det_score`` float32
  (M); ``det_bbox`` float32 (M, 4), COCO ``[x, y, w, h]`` in pixels.

Root attrs: the usual artifact attrs (``stage`` = ``detect``, ``n_rows`` = N), ``detector`` (its
config), ``categories`` (``[{"id", "name"}]``: what ``det_category_id`` denotes),
``n_detections`` (M), ``n_skipped_images`` and provenance (``split_file``, ``source`` …).

**Streaming and resuming.** :class:`DetectionWriter` appends images batch by batch to the hidden
partial file ``.detections.h5.partial`` (:func:`pipeline.artifacts.partial_path`) and, on
:meth:`~DetectionWriter.commit`, flushes the rows and then records how many images and
detections are complete. The file carries a fingerprint of everything the detections depend on
(detector config, its weights file's hash, image paths and ids); a writer with the same
fingerprint reopens it and goes on after the last committed image, any other partial file is
deleted and the reason logged. Memory holds one batch, never the whole collection.
:func:`iter_blocks` reads the detections back in blocks of a bounded number of rows.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline.artifacts import PartialFile, _decode_attr, _open, _root_attrs, partial_path

#: detections per HDF5 chunk of the per-detection datasets (and default read block)
CHUNK = 1 << 16
#: bump when a code change alters what the detectors write, so old partial files are not resumed
RESUME_FORMAT = 1
#: the per-detection datasets and their (tail shape, dtype)
DET_COLUMNS: dict[str, tuple[tuple[int, ...], Any]] = {
    "det_row": ((), np.int32), "det_category_id": ((), np.int32),
    "det_score": ((), np.float32), "det_bbox": ((4,), np.float32)}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (a detector's weights, a user's results file)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dets_to_arrays(per_image: Sequence[Sequence[Mapping[str, Any]]]
                   ) -> dict[str, np.ndarray]:
    """COCO-results dicts of consecutive images → ``n_detections`` and the ``det_*`` columns
    (without ``det_row``, which :meth:`DetectionWriter.add` fills in)."""
    flat = [d for dets in per_image for d in dets]
    return {"n_detections": np.array([len(d) for d in per_image], np.int32),
            "det_category_id": np.array([int(d["category_id"]) for d in flat], np.int32),
            "det_score": np.array([float(d["score"]) for d in flat], np.float32),
            "det_bbox": np.array([list(d.get("bbox") or (0, 0, 0, 0)) for d in flat],
                                 np.float32).reshape(len(flat), 4)}


class DetectionWriter(PartialFile):
    """Append images' detections to a resumable ``detections.h5`` (see the module docstring).

    Use as a context manager: on a clean exit with every image added and committed, the file is
    renamed onto ``path``; on an exception the partial file is kept for the next attempt.
    ``resume_key`` (JSON-able) names what the detections depend on besides ``ids``. The partial
    file's life (reopen or discard, commit, publish) is :class:`pipeline.artifacts.PartialFile`'s.
    """

    COUNTERS = ("rows-complete", "detections-complete")
    ROWS = "images"
    INCOMPLETE = "images have detections"

    def __init__(self, path: str | os.PathLike, *, ids: np.ndarray,
                 resume_key: Mapping[str, Any], attrs: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = partial_path(self.path)
        ids = np.ascontiguousarray(np.asarray(ids, dtype=np.int64))
        self.n_rows = len(ids)
        self._key = json.dumps({
            "format": RESUME_FORMAT, "key": json.loads(json.dumps(dict(resume_key),
                                                                  sort_keys=True, default=str)),
            "ids_sha256": hashlib.sha256(ids.tobytes()).hexdigest()}, sort_keys=True)
        #: images (rows) and detections committed by this or an interrupted earlier writer
        self.rows_done = self.dets_done = 0
        #: what happened to an existing partial file ("" when there was none)
        self.resume_note = ""
        reopened = self._open_partial(self._key)
        if reopened is not None:
            self.f, (self.rows_done, self.dets_done) = reopened
        else:
            self.f = h5py.File(self.tmp, "w")
            self.f.create_dataset("ids", data=ids)
            for name, dtype in (("valid", np.uint8), ("n_detections", np.int32)):
                self.f.create_dataset(name, shape=(self.n_rows,), dtype=dtype, fillvalue=0,
                                      chunks=(max(1, min(self.n_rows, 1 << 18)),))
            for name, (tail, dtype) in DET_COLUMNS.items():
                self.f.create_dataset(name, shape=(0, *tail), maxshape=(None, *tail),
                                      dtype=dtype, chunks=(CHUNK, *tail), compression="gzip",
                                      shuffle=True)
            for name in self.f:  # dimension labels, as every artifact's rows carry
                self.f[name].dims[0].label = "detection" if name.startswith("det_") else "image"
            self.f["det_bbox"].dims[1].label = "xywh"
            self.f.attrs["resume-key"] = self._key
            self.commit()
        _root_attrs(self.f, "detect", self.n_rows, attrs)

    def _counts_valid(self, f: h5py.File, counts: list[int]) -> bool:
        """The committed detections must be in the file."""
        return 0 <= counts[1] <= len(f["det_row"])

    def _mismatch(self, old_key: Any) -> str:
        """The fingerprint is a hash, so the reason names only what it covers."""
        return "made with another detector, weights file or image list"

    def rewind(self, rows: int) -> None:
        """Forget every image from row ``rows`` on (to restart at a batch boundary)."""
        if rows > self.rows_done:
            raise ValueError(f"cannot rewind to {rows}: only {self.rows_done} rows are done")
        self.dets_done = int(self.f["n_detections"][:rows].sum())
        self.rows_done = int(rows)

    def add(self, columns: Mapping[str, np.ndarray], valid: np.ndarray | None = None) -> None:
        """Append the next images: ``n_detections`` (k,) and ``det_category_id``,
        ``det_score``, ``det_bbox`` of their detections in image order (:func:`dets_to_arrays`);
        ``valid`` (k,) 0 for unreadable images (default all 1)."""
        counts = np.asarray(columns["n_detections"], np.int32)
        k, m = len(counts), int(counts.sum())
        r0 = self.rows_done
        if r0 + k > self.n_rows:
            raise ValueError(f"{self.path}: more images added than its {self.n_rows} rows")
        if any(len(columns[c]) != m for c in ("det_category_id", "det_score", "det_bbox")):
            raise ValueError("detection columns disagree with n_detections")
        self.f["n_detections"][r0:r0 + k] = counts
        self.f["valid"][r0:r0 + k] = 1 if valid is None else np.asarray(valid, np.uint8)
        d0 = self.dets_done
        new = {"det_row": np.repeat(np.arange(r0, r0 + k, dtype=np.int32), counts),
               **{c: columns[c] for c in ("det_category_id", "det_score", "det_bbox")}}
        for name, arr in new.items():
            ds = self.f[name]
            if ds.shape[0] < d0 + m:
                ds.resize(d0 + m, axis=0)
            ds[d0:d0 + m] = arr
        self.rows_done, self.dets_done = r0 + k, d0 + m

    def commit(self) -> None:
        """Make every image added so far durable: flush the rows, then record the counts (a
        kill in between leaves counts too low, never too high)."""
        self._record(self.rows_done, self.dets_done)

    def _finish(self) -> None:
        """Trim the detection datasets to the committed detections; record the totals."""
        for name in DET_COLUMNS:
            self.f[name].resize(self.dets_done, axis=0)
        self.f.attrs["n_detections"] = self.dets_done
        self.f.attrs["n_skipped_images"] = int((self.f["valid"][...] == 0).sum())


def read_header(path: str | os.PathLike) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """A ``detections.h5``'s root attrs, ``ids`` and ``valid`` (not its detections).

    Raises:
        ValueError: the file is not a ``detect`` artifact (e.g. an older ``detections.json``).
    """
    with _open(path) as f:
        attrs = {k: _decode_attr(v) for k, v in f.attrs.items()}
        if attrs.get("stage") != "detect":
            raise ValueError(f"{path}: expected detections of stage 'detect', found stage "
                             f"'{attrs.get('stage')}'; rerun the detect rule")
        return attrs, f["ids"][...], f["valid"][...]


def iter_blocks(path: str | os.PathLike, block: int = CHUNK,
                columns: Sequence[str] = ("det_row", "det_category_id", "det_score")
                ) -> Iterator[dict[str, np.ndarray]]:
    """The detections of a ``detections.h5``, ``block`` at a time (a generator: memory holds
    one block of ``columns``, whatever the file's size)."""
    if block < 1:
        raise ValueError("iter_blocks: block must be at least 1")
    with _open(path) as f:
        n = len(f["det_row"])
        for start in range(0, n, block):
            yield {c: f[c][start:min(n, start + block)] for c in columns}

