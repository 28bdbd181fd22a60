"""Detections (COCO results format) → multi-hot auxiliary labels: pure functions.

Shared by every detector (Faster R-CNN for MS COCO, the demo's cell classifier). A detector's
classes are matched to the dataset's label columns by *name* (:func:`match_classes`), never by
numeric category id: a COCO-format collection may number its classes otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

log = logging.getLogger("pipeline.detectors.multihot")
#: logger of :func:`detections_to_aux` (the auxiliary stage's messages)
_aux_log = logging.getLogger("pipeline.auxiliary")


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
        accumulate_best(best, np.asarray(rows), np.asarray(cols), np.asarray(scores))
    return threshold_best(best, threshold)


def accumulate_best(best: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                    scores: np.ndarray) -> None:
    r"""The max of :func:`scores_to_multihot`, one block of detections at a time:
    :math:`s_{ic} \leftarrow \max(s_{ic}, \text{score}(d))` for each detection ``d`` at
    ``(rows[d], cols[d])``, in place (``best`` starts at :math:`-\infty`).

    Example:
        >>> best = np.full((2, 2), -np.inf)
        >>> accumulate_best(best, np.array([0, 0, 1]), np.array([1, 1, 0]),
        ...                 np.array([0.2, 0.5, 0.4]))
        >>> best.tolist()
        [[-inf, 0.5], [0.4, -inf]]
    """
    np.maximum.at(best, (rows, cols), scores.astype(best.dtype, copy=False))


def threshold_best(best: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    r""":math:`y_{ic} = [s_{ic} \ge t]` of :func:`scores_to_multihot` from the accumulated
    best scores (:math:`-\infty` where there was no detection: :math:`y = 0`, score 0). The
    comparison is made in ``best``'s dtype (``t`` rounded to it, so a score stored in float32
    that equals the threshold still counts)."""
    found = np.isfinite(best)
    labels = (found & (best >= best.dtype.type(threshold))).astype(np.uint8)
    return labels, np.where(found, best, 0.0).astype(np.float16)


def match_classes(detector_categories: Sequence[Mapping[str, Any]], class_names: Sequence[str],
                  class_map: Mapping[str, str | None] | None = None,
                  where: str = "auxiliary") -> tuple[dict[int, int], dict[str, str | None]]:
    """Detector category id → dataset label column, matched by class name.

    Every detector class goes to the dataset class of the same name, unless ``class_map``
    renames it (``detector name: dataset name``) or drops it (``detector name: None``).

    Args:
        detector_categories: the detector's classes, ``{"id", "name"}`` each (the
            ``categories`` of ``detections.json``).
        class_names: the dataset's label columns, in order (``split.h5``'s ``class_names``).
        class_map: renames and drops (config ``auxiliary.class_map``).
        where: prefix of the error messages.

    Returns:
        ``{category id: column}`` of the kept classes, and the complete map
        ``{detector name: dataset name or None}`` (recorded in ``aux.h5``).

    Raises:
        ValueError: naming the classes, when ``class_map`` names a class the detector does not
            have or a dataset class that does not exist, when a detector class has no dataset
            class of its name and is not mapped or dropped, or when a dataset class is produced
            by no detector class (its column would always be 0).

    Example:
        >>> cats = [{"id": 13, "name": "stop sign"}, {"id": 14, "name": "parking meter"},
        ...         {"id": 90, "name": "toothbrush"}]
        >>> match_classes(cats, ["parking meter", "stop sign", "brush"],
        ...               {"toothbrush": "brush"})[0]
        {13: 1, 14: 0, 90: 2}
    """
    class_map = dict(class_map or {})
    ids = [int(c["id"]) for c in detector_categories]
    names = [str(c["name"]) for c in detector_categories]
    if len(set(ids)) != len(ids) or len(set(names)) != len(names):
        raise ValueError(f"{where}: the detector's categories repeat an id or a name; rerun "
                         "the detect rule")
    column = {n: j for j, n in enumerate(class_names)}
    problems = []
    unknown_keys = sorted(set(class_map) - set(names))
    if unknown_keys:
        problems.append(f"auxiliary.class_map names classes the detector does not have: "
                        f"{unknown_keys}")
    bad_targets = sorted({v for v in class_map.values() if v is not None and v not in column})
    if bad_targets:
        problems.append(f"auxiliary.class_map maps to classes the dataset does not have: "
                        f"{bad_targets} (dataset classes: {list(class_names)})")
    full = {n: class_map.get(n, n) for n in names}
    unmatched = [n for n, target in full.items()
                 if n not in class_map and target not in column]
    if unmatched:
        problems.append(f"detector classes with no dataset class of that name: {unmatched}; "
                        "map each in auxiliary.class_map to a dataset class, or to null to "
                        "drop it")
    never = [c for c in class_names if c not in set(full.values())]
    if never:
        problems.append(f"dataset classes the detector never produces: {never}; map a detector "
                        "class to each in auxiliary.class_map, or use another detector")
    if problems:
        raise ValueError(f"{where}: the detector's classes do not match the dataset's:\n  "
                         + "\n  ".join(problems))
    cols = {i: column[full[n]] for i, n in zip(ids, names, strict=True) if full[n] is not None}
    return cols, full


def detections_to_aux(det: Mapping[str, Any], ids: np.ndarray, class_names: Sequence[str],
                      class_map: Mapping[str, str | None], threshold: float,
                      where: str = "detections.json"
                      ) -> tuple[np.ndarray, np.ndarray, dict[str, str | None]]:
    """A ``detections.json`` → ``aux_labels``, ``aux_scores`` (N, C) and the class map used.

    Raises:
        ValueError: the file has no ``categories`` (written before they were recorded), or the
            detector's classes do not match ``class_names`` (see
            :func:`~pipeline.detectors.multihot.match_classes`).
    """
    if "categories" not in det:
        raise ValueError(f"{where}: no 'categories' (the detector's class names); it was "
                         "written by an older version: rerun the detect rule "
                         "(snakemake -R detect ...)")
    cols, full_map = match_classes(det["categories"], class_names, class_map, where=where)
    kept = [{"image_id": d["image_id"], "category_id": cols[int(d["category_id"])],
             "score": d["score"]}
            for d in det["detections"] if int(d["category_id"]) in cols]
    known = {int(c["id"]) for c in det["categories"]}
    stray = sum(int(d["category_id"]) not in known for d in det["detections"])
    if stray:
        _aux_log.warning("%s: %d detections have a category_id not among its categories; "
                         "ignored", where, stray)
    dropped = len(det["detections"]) - len(kept) - stray
    if dropped:
        _aux_log.info("%d detections of classes dropped by auxiliary.class_map ignored", dropped)
    aux, scores = scores_to_multihot(kept, ids, list(range(len(class_names))), threshold)
    return aux, scores, full_map


def detections_file_to_aux(path: str, ids: np.ndarray, class_names: Sequence[str],
                           class_map: Mapping[str, str | None], threshold: float, *,
                           block: int = 1 << 16
                           ) -> tuple[np.ndarray, np.ndarray, dict[str, str | None],
                                      dict[str, Any]]:
    """A ``detections.h5`` → ``aux_labels``, ``aux_scores`` (N, C), the class map used and the
    file's attrs, reading the detections ``block`` at a time
    (:func:`pipeline.detectors.store.iter_blocks`): memory holds the (N, C) result and one
    block, whatever the number of detections.

    Raises:
        ValueError: the file's rows are not ``ids`` (a detections file of another split), or
            its classes do not match ``class_names`` (:func:`match_classes`).
    """
    from pipeline.artifacts import check_aligned
    from pipeline.detectors.store import iter_blocks, read_header

    attrs, det_ids, _ = read_header(path)
    check_aligned(np.asarray(ids), det_ids, "split.h5", str(path))
    cols, full_map = match_classes(attrs["categories"], class_names, class_map, where=path)
    known = np.array(sorted(int(c["id"]) for c in attrs["categories"]), np.int64)
    # column of each known category id (-1: dropped by class_map)
    col_of = np.array([cols.get(int(c), -1) for c in known], np.int64)
    best = np.full((len(ids), len(class_names)), -np.inf, dtype=np.float32)
    stray = dropped = 0
    for b in iter_blocks(path, block):
        cat = b["det_category_id"].astype(np.int64)
        pos = np.clip(np.searchsorted(known, cat), 0, max(len(known) - 1, 0))
        ok = known[pos] == cat if len(known) else np.zeros(len(cat), bool)
        col = np.where(ok, col_of[pos] if len(known) else -1, -1)
        stray += int((~ok).sum())
        dropped += int((ok & (col < 0)).sum())
        keep = col >= 0
        accumulate_best(best, b["det_row"][keep], col[keep], b["det_score"][keep])
    if stray:
        _aux_log.warning("%s: %d detections have a category_id not among its categories; "
                         "ignored", path, stray)
    if dropped:
        _aux_log.info("%d detections of classes dropped by auxiliary.class_map ignored", dropped)
    aux, scores = threshold_best(best, threshold)
    return aux, scores, full_map, attrs
