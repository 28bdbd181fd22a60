"""Stage ``index_aux``: the dataset's detector on an index's images, then the ``auxiliary``
stage's thresholding → the index's ``aux.h5`` (same layout as the dataset's).

``python -m pipeline.stages.index_aux --split results/D/index/NAME/split.h5
--detector-json '{"kind": ...}' [--checkpoint resources/D/cell_classifier.pt]
--auxiliary-json '{"threshold": ..., "class_map": {...}}' --out results/D/index/NAME/aux.h5``

The detector and the thresholding are the library functions ``search`` uses for a new image
(:func:`pipeline.retrieval.new_images.run_detector`, :func:`~pipeline.retrieval.new_images.
aux_from_detections`). An index has no user tags: a dataset whose auxiliary labels are tags
(NUS-WIDE) cannot grow this way.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from pipeline import schema
from pipeline.artifacts import read_h5, write_h5
from pipeline.device import pick_device, set_threads
from pipeline.retrieval.new_images import aux_from_detections, run_detector

log = logging.getLogger("pipeline.index_aux")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.index_aux", description=__doc__)
    p.add_argument("--split", required=True, help="the index's split.h5")
    p.add_argument("--detector-json", required=True, help="the dataset's detector section")
    p.add_argument("--checkpoint", default=None, help="model file for detectors trained here")
    p.add_argument("--auxiliary-json", required=True, help="the dataset's auxiliary section")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default=schema.dataset_default("device"))
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    set_threads(a.threads)
    cfg = json.loads(a.detector_json)
    if a.checkpoint:
        cfg["checkpoint"] = a.checkpoint
    auxiliary = json.loads(a.auxiliary_json)
    data, attrs = read_h5(a.split, ["ids", "paths"], stage="split")
    root = Path(attrs["image_root"])
    paths = [str(root / p) for p in data["paths"]]
    try:
        det = run_detector(paths, data["ids"], cfg, pick_device(a.device))
        aux, scores = aux_from_detections(det, data["ids"], attrs["class_names"], auxiliary,
                                          where=f"detector on {a.split}")
    except ValueError as e:
        raise SystemExit(str(e)) from None
    if det["skipped_ids"]:
        log.warning("%d of %d images could not be read and have no detections: %s",
                    len(det["skipped_ids"]), len(paths), det["skipped_ids"][:20])
    empty = int((aux.sum(1) == 0).sum())
    write_h5(a.out, {"ids": data["ids"], "aux_labels": aux.astype(np.uint8),
                     "aux_scores": scores.astype(np.float16)},
             stage="auxiliary",
             attrs={"source": "detector", "detector": cfg,
                    "threshold": float(auxiliary["threshold"]),
                    "n_skipped_images": len(det["skipped_ids"]),
                    "class_map": auxiliary["class_map"], "class_names": attrs["class_names"],
                    "split_file": a.split, "protocol": attrs.get("protocol"),
                    "index": attrs.get("index"), "n_images_without_aux": empty})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
