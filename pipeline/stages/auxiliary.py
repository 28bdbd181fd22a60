"""Stage ``auxiliary``: detections (or user tags) → multi-hot ``aux_labels`` in ``aux.h5``.

``python -m pipeline.stages.auxiliary --split S --detections D.h5 --threshold 0.5 --out aux.h5``
``python -m pipeline.stages.auxiliary --split S --tags-source-json '{...}' --out aux.h5``
(NUS-WIDE)

A class is present in an image when some detection of it scores ≥ ``threshold`` (the paper's
"objects with high prediction scores"); ``aux_scores`` keeps the best score per class so a user
can see what another threshold would give.

Detections are read in blocks (:func:`pipeline.detectors.multihot.detections_file_to_aux`), so
memory does not grow with their number.

Detector classes become label columns by *name* (``detections.h5``'s ``categories`` against
``split.h5``'s ``class_names``), with ``auxiliary.class_map`` renaming or dropping classes; any
mismatch stops the stage naming the classes (:func:`pipeline.detectors.multihot.match_classes`,
called by :func:`pipeline.detectors.multihot.detections_file_to_aux`).
The complete map is recorded in ``aux.h5`` (attr ``class_map``).
"""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np

from pipeline import schema
from pipeline.artifacts import read_h5, write_h5
from pipeline.detectors.multihot import detections_file_to_aux

log = logging.getLogger("pipeline.auxiliary")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.auxiliary", description=__doc__)
    p.add_argument("--split", required=True)
    p.add_argument("--detections", default=None)
    p.add_argument("--threshold", type=float, default=schema.defaults("auxiliary")["threshold"])
    p.add_argument("--class-map-json", default=None,
                   help="auxiliary.class_map: {detector class: dataset class or null}")
    p.add_argument("--tags-source-json", default=None)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    data, attrs = read_h5(a.split, ["ids"], stage="split")
    ids = data["ids"]
    if a.detections:
        class_map = json.loads(a.class_map_json) if a.class_map_json else {}
        aux, scores, full_map, det = detections_file_to_aux(
            a.detections, ids, attrs["class_names"], class_map, a.threshold)
        source = {"source": "detector", "detector": det["detector"],
                  "threshold": a.threshold, "n_skipped_images": det["n_skipped_images"],
                  "class_map": full_map}
    elif a.tags_source_json:
        from pipeline.data.nuswide import tag_aux_labels

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
