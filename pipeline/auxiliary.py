"""Auxiliary-label stage: detections (or user tags) → multi-hot ``aux_labels`` in ``aux.h5``.

``python -m pipeline.auxiliary --split S --detections D.json --threshold 0.5 --out aux.h5``
``python -m pipeline.auxiliary --split S --tags-source-json '{...}' --out aux.h5`` (NUS-WIDE)

A class is present in an image when some detection of it scores ≥ ``threshold`` (the paper's
"objects with high prediction scores"); ``aux_scores`` keeps the best score per class so a user
can see what another threshold would give.

Detector classes become label columns by *name* (``detections.json``'s ``categories`` against
``split.h5``'s ``class_names``), with ``auxiliary.class_map`` renaming or dropping classes; any
mismatch stops the stage naming the classes (:func:`pipeline.detectors.multihot.match_classes`).
The complete map is recorded in ``aux.h5`` (attr ``class_map``).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.artifacts import read_h5, write_h5
from pipeline.detectors.multihot import match_classes, scores_to_multihot

log = logging.getLogger("pipeline.auxiliary")


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
        log.warning("%s: %d detections have a category_id not among its categories; ignored",
                    where, stray)
    dropped = len(det["detections"]) - len(kept) - stray
    if dropped:
        log.info("%d detections of classes dropped by auxiliary.class_map ignored", dropped)
    aux, scores = scores_to_multihot(kept, ids, list(range(len(class_names))), threshold)
    return aux, scores, full_map


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.auxiliary", description=__doc__)
    p.add_argument("--split", required=True)
    p.add_argument("--detections", default=None)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--class-map-json", default=None,
                   help="auxiliary.class_map: {detector class: dataset class or null}")
    p.add_argument("--tags-source-json", default=None)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    data, attrs = read_h5(a.split, ["ids"], stage="split")
    ids = data["ids"]
    if a.detections:
        with open(a.detections) as fh:
            det = json.load(fh)
        class_map = json.loads(a.class_map_json) if a.class_map_json else {}
        aux, scores, full_map = detections_to_aux(det, ids, attrs["class_names"], class_map,
                                                  a.threshold, where=a.detections)
        source = {"source": "detector", "detector": det["detector"],
                  "threshold": a.threshold, "n_skipped_images": len(det["skipped_ids"]),
                  "class_map": full_map}
    elif a.tags_source_json:
        from pipeline.datasets.nuswide import tag_aux_labels

        aux = tag_aux_labels(json.loads(a.tags_source_json), ids,
                             concepts=attrs["class_names"])
        scores = aux.astype(np.float16)
        source = {"source": "user tags", "threshold": "null"}
    else:
        raise SystemExit("give --detections or --tags-source-json")
    empty = int((aux.sum(1) == 0).sum())
    log.info("aux labels: %.2f classes per image on average, %d images with none",
             aux.sum(1).mean(), empty)
    write_h5(a.out, {"ids": ids, "aux_labels": aux.astype(np.uint8),
                     "aux_scores": scores.astype(np.float16)},
             stage="auxiliary",
             attrs={**source, "class_names": attrs["class_names"], "split_file": a.split,
                    "protocol": attrs.get("protocol"),
                    "n_images_without_aux": empty})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
