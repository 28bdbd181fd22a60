"""Search: the Hamming top-k retrieval images for an image that is already encoded.

Library of ``python -m pipeline search`` (:mod:`pipeline.__main__`):
``python -m pipeline search --codes results/D/codes/M_B.h5 --split results/D/split.h5
(--id ID | --path PATH) [--k 10]``

The image may be a query or a retrieval row of the codes file. The retrieval set is searched
with the evaluation's ranking (Hamming distance, ties by retrieval index ascending), so a
retrieval image finds itself first (distance 0) unless an earlier row has the same code. Prints
one line per result: rank, id, path, Hamming distance and whether it shares a ground-truth label
with the searched image.
"""

from __future__ import annotations

import numpy as np

from pipeline.artifacts import check_aligned, read_h5
from pipeline.data.split_table import QUERY, RETRIEVAL, SPLIT_NAMES
from pipeline.retrieval.hamming import hamming_topk


def find_row(ids: np.ndarray, paths: np.ndarray, *, image_id: int | None = None,
             path: str | None = None) -> int:
    """Row of ``split.h5`` with this id, or whose path equals (or ends with) ``path``."""
    if image_id is not None:
        hit = np.flatnonzero(ids == image_id)
        if len(hit) == 0:
            raise ValueError(f"no image with id {image_id} in the split")
        return int(hit[0])
    assert path is not None
    hit = np.flatnonzero(paths == path)
    if len(hit) == 0:
        hit = np.flatnonzero(np.char.endswith(paths.astype(str), "/" + path.lstrip("/")))
    if len(hit) == 0:
        raise ValueError(f"no image with path {path!r} in the split")
    if len(hit) > 1:
        raise ValueError(f"path {path!r} matches {len(hit)} images; give the full path or --id")
    return int(hit[0])


def search(codes_path: str, split_path: str, *, image_id: int | None = None,
           path: str | None = None, k: int = 10) -> list[dict]:
    """Top-``k`` retrieval items for one encoded image (a list of dicts, best first)."""
    sp, _ = read_h5(split_path, ["ids", "paths", "labels", "split"])
    cd, attrs = read_h5(codes_path, ["ids", "codes", "split"], stage="codes")
    rows = np.isin(sp["split"], (QUERY, RETRIEVAL))
    check_aligned(sp["ids"][rows], cd["ids"], f"{split_path} (query+retrieval rows)", codes_path)
    row = find_row(sp["ids"], sp["paths"], image_id=image_id, path=path)
    if not rows[row]:
        kind = dict(enumerate(SPLIT_NAMES)).get(int(sp["split"][row]), "unused")
        raise ValueError(f"image id {sp['ids'][row]} is a {kind} image and has no code; "
                         "search with a query or retrieval image")
    code_row = int(np.count_nonzero(rows[:row]))
    db_mask = cd["split"] == RETRIEVAL
    db_rows = np.flatnonzero(rows)[db_mask]  # split.h5 row of every retrieval code
    idx, dist = hamming_topk(cd["codes"][code_row:code_row + 1], cd["codes"][db_mask], k,
                             device="numpy")
    labels = sp["labels"].astype(bool)
    out = []
    for rank, (j, d) in enumerate(zip(idx[0], dist[0], strict=True), start=1):
        r = db_rows[j]
        out.append({"rank": rank, "id": int(sp["ids"][r]), "path": str(sp["paths"][r]),
                    "hamming": int(d), "relevant": bool(np.any(labels[r] & labels[row]))})
    return out


__all__ = ["search", "find_row"]
