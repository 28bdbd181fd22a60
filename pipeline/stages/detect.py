"""Stage ``detect``: run a detector on every image of a split → COCO-results JSON.

``python -m pipeline.stages.detect --split S --detector-json '{"kind": ...}' --out detections.json``

Kinds: ``faster_rcnn`` (MS COCO, torchvision's COCO-trained Faster R-CNN) and
``cell_classifier`` (the offline demo). The output keeps every detection above the detector's
``score_floor``, so the auxiliary stage can change its threshold without rerunning this one,
and the detector's ``categories`` (``{"id", "name"}``: the classes its ``category_id`` values
denote), which the auxiliary stage matches to the dataset's classes by name. The detector
modules are listed in :data:`pipeline.detectors.KINDS`.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from pipeline import schema
from pipeline.artifacts import atomic_path, read_h5
from pipeline.detectors import detector_module
from pipeline.device import pick_device, set_threads

log = logging.getLogger("pipeline.detect")

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.detect", description=__doc__)
    p.add_argument("--split", required=True)
    p.add_argument("--detector-json", required=True)
    p.add_argument("--checkpoint", default=None, help="model file for detectors trained here")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default=schema.dataset_default("device"))
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    set_threads(a.threads)
    cfg = json.loads(a.detector_json)
    if a.checkpoint:
        cfg["checkpoint"] = a.checkpoint
    try:
        module = detector_module(cfg.get("kind"))
    except ValueError as e:
        raise SystemExit(str(e)) from None
    data, attrs = read_h5(a.split, ["ids", "paths"], stage="split")
    root = Path(attrs["image_root"])
    paths = [str(root / p) for p in data["paths"]]
    dets, skipped = module.detect(paths, data["ids"], cfg, pick_device(a.device))
    if skipped:
        log.warning("%d of %d images could not be read and have no detections: %s",
                    len(skipped), len(paths), skipped[:20])
    result = {"detector": cfg, "categories": module.categories(cfg), "n_images": len(paths),
              "skipped_ids": skipped, "detections": dets}
    with atomic_path(a.out) as tmp, open(tmp, "w") as fh:
        json.dump(result, fh)
    log.info("wrote %d detections for %d images to %s", len(dets), len(paths), a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
