"""Detections (COCO results format) → multi-hot auxiliary labels: a pure function.

Shared by every detector (Faster R-CNN for MS COCO, the demo's cell classifier).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

log = logging.getLogger("pipeline.detectors.multihot")


def scores_to_multihot(detections: Iterable[Mapping[str, Any]], ids: np.ndarray,
                       category_ids: Sequence[int], threshold: float
                       ) -> tuple[np.ndarray, np.ndarray]:
    r"""Per image and class, the best detection score, and whether it reaches ``threshold``.

    .. math::
        s_{ic} = \max\{\text{score}(d) : d \text{ a detection of class } c \text{ in image } i\},
        \qquad y_{ic} = [\text{image } i \text{ has a detection of } c]\,[s_{ic} \ge t]

    where :math:`s_{ic} = 0` when image :math:`i` has no detection of class :math:`c` (then
    :math:`y_{ic} = 0` for every :math:`t`). A score equal to the threshold counts as present.

    Args:
        detections: dicts with ``image_id``, ``category_id`` and ``score`` (``bbox`` unused).
        ids: image ids, one per output row (``split.h5`` order).
        category_ids: the category id of each output column (e.g. COCO's sparse ids in
            ascending order); detections of other categories or images are ignored and counted
            in a warning.
        threshold: :math:`t`.

    Returns:
        ``aux_labels`` uint8 (N, C) and ``aux_scores`` float16 (N, C) (the comparison with
        :math:`t` is made in float64 before the scores are rounded to float16).

    Example:
        >>> dets = [{"image_id": 7, "category_id": 3, "score": 0.5},
        ...         {"image_id": 7, "category_id": 3, "score": 0.2},
        ...         {"image_id": 9, "category_id": 1, "score": 0.4}]
        >>> lab, sc = scores_to_multihot(dets, np.array([7, 9]), [1, 3], 0.5)
        >>> lab.tolist(), sc.astype(float).round(2).tolist()
        ([[0, 1], [0, 0]], [[0.0, 0.5], [0.4, 0.0]])
    """
    ids = np.asarray(ids, dtype=np.int64)
    row = {int(i): r for r, i in enumerate(ids)}
    col = {int(c): j for j, c in enumerate(category_ids)}
    if len(row) != len(ids):
        raise ValueError("scores_to_multihot: ids are not unique")
    rows, cols, scores = [], [], []
    unknown_image = unknown_cat = 0
    for d in detections:
        r = row.get(int(d["image_id"]))
        c = col.get(int(d["category_id"]))
        if r is None:
            unknown_image += 1
            continue
        if c is None:
            unknown_cat += 1
            continue
        rows.append(r)
        cols.append(c)
        scores.append(float(d["score"]))
    if unknown_image or unknown_cat:
        log.warning("ignored %d detections of images not in the split and %d of categories "
                    "not among the %d label columns", unknown_image, unknown_cat, len(col))
    best = np.full((len(ids), len(col)), -np.inf, dtype=np.float64)
    if rows:
        np.maximum.at(best, (np.asarray(rows), np.asarray(cols)), np.asarray(scores))
    found = np.isfinite(best)
    labels = (found & (best >= threshold)).astype(np.uint8)
    return labels, np.where(found, best, 0.0).astype(np.float16)
