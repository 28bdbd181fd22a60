"""Stage ``detect``: a detector's outputs on every image of a split → ``detections.h5``.

``python -m pipeline.stages.detect --split S --detector-json '{"kind": ...}' --out detections.h5
[--checkpoint F] [--instances F] [--commit-images N]``

Kinds (:data:`pipeline.detectors.KINDS`): ``faster_rcnn`` (MS COCO, torchvision's COCO-trained
Faster R-CNN), ``cell_classifier`` (the offline demo) and ``coco_results`` (your own detector's
COCO results json, :mod:`pipeline.detectors.coco_results`; ``--instances`` is the collection's
instances file, which gives the default categories and tells images outside the split from
unknown ones). The output keeps every detection above the detector's ``score_floor``, so the
auxiliary stage can change its threshold without rerunning this one, and the detector's
``categories`` (``{"id", "name"}``), which the auxiliary stage matches to the dataset's classes
by name.

Detections stream to disk batch by batch and a killed or failed run resumes where it stopped
(:mod:`pipeline.detectors.store`: the format, the fingerprint, the partial file); a commit is
made every ``--commit-images`` images (rounded up to whole detector batches) or at the first
batch boundary after a minute, whichever comes first.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import schema
from pipeline.artifacts import read_h5
from pipeline.detectors import detector_module
from pipeline.detectors.store import DetectionWriter, dets_to_arrays, file_sha256

log = logging.getLogger("pipeline.detect")

#: images between durable commits of the partial file (before rounding up to whole batches)
COMMIT_IMAGES = 1024
#: ... or seconds, whichever comes first (a slow detector on a CPU loses at most this much)
COMMIT_SECONDS = 60.0


def _exit_on_sigterm() -> None:
    """SIGTERM (a cancelled job) → ``SystemExit``, so the partial file is closed cleanly."""
    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def run_detector(module: Any, paths: list[str], ids: np.ndarray, cfg: dict[str, Any],
                 out: str, device: str, attrs: dict[str, Any], commit_images: int) -> None:
    """Stream ``module.iter_detect`` into ``out``, resuming a matching partial file."""
    checkpoint = cfg.get("checkpoint")
    key = {"detector": cfg, "device_type": str(device).split(":")[0],
           "checkpoint_sha256": file_sha256(checkpoint) if checkpoint else None,
           "paths_sha256": hashlib.sha256("\0".join(paths).encode()).hexdigest()}
    batch = module.batch_images(cfg)
    step = max(batch, -(-commit_images // batch) * batch)
    with DetectionWriter(out, ids=ids, resume_key=key, attrs=attrs) as w:
        if w.resume_note:
            (log.info if w.rows_done else log.warning)("%s", w.resume_note)
        start = w.rows_done - w.rows_done % batch  # the same batches as an uninterrupted run
        w.rewind(start)
        pending: list[list[dict[str, Any]]] = []
        valid: list[int] = []
        last = time.monotonic()
        for _, found in module.iter_detect(paths[start:], ids[start:], cfg, device):
            pending.append(found or [])
            valid.append(found is not None)
            if len(pending) % batch == 0 or w.rows_done + len(pending) == len(paths):
                w.add(dets_to_arrays(pending), np.asarray(valid, np.uint8))
                pending, valid = [], []
                if w.rows_done % step == 0 or w.rows_done == len(paths) \
                        or time.monotonic() - last > COMMIT_SECONDS:
                    w.commit()
                    last = time.monotonic()
        w.commit()
    skipped = int(len(paths) - np.count_nonzero(read_h5(out, ["valid"])[0]["valid"]))
    if skipped:
        log.warning("%d of %d images could not be read and have no detections", skipped,
                    len(paths))


def convert_results(module: Any, paths: list[str], ids: np.ndarray, cfg: dict[str, Any],
                    out: str, instances: str | None, attrs: dict[str, Any]) -> None:
    """``coco_results``: the user's json → ``out`` (a conversion: nothing to resume)."""
    try:
        cats, cats_from = module.load_categories(cfg.get("categories"), instances)
        columns, counts = module.read_results(cfg["path"], ids, paths, cats, cfg,
                                              module.collection_images(instances))
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(str(e)) from None
    log.info("%s: %d entries (%d matched by file_name, %d by image_id), %d of images outside "
             "the split ignored, %d below the score floor", cfg["path"], counts["n_entries"],
             counts["by_file_name"], counts["by_image_id"], counts["outside_split"],
             counts["below_score_floor"])
    no_dets = int((columns["n_detections"] == 0).sum())
    if no_dets:
        log.warning("%d of %d images of the split have no detection in %s", no_dets,
                    len(paths), cfg["path"])
    source = {"results_file": str(cfg["path"]), "results_sha256": file_sha256(cfg["path"]),
              "categories_from": cats_from, **counts}
    with DetectionWriter(out, ids=ids, resume_key={"results": source},
                         attrs={**attrs, "categories": cats, "results": source}) as w:
        w.rewind(0)
        w.add(columns)
        w.commit()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.detect", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", required=True)
    p.add_argument("--detector-json", required=True)
    p.add_argument("--checkpoint", default=None, help="model file for detectors trained here")
    p.add_argument("--instances", default=None,
                   help="coco_results: the collection's COCO instances file")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default=schema.dataset_default("device"))
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--commit-images", type=int, default=COMMIT_IMAGES,
                   help="images between durable commits of the partial file")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = json.loads(a.detector_json)
    if a.checkpoint:
        cfg["checkpoint"] = a.checkpoint
    try:
        module = detector_module(cfg.get("kind"))
    except ValueError as e:
        raise SystemExit(str(e)) from None
    data, attrs = read_h5(a.split, ["ids", "paths"], stage="split")
    root = Path(attrs["image_root"])
    ids = data["ids"]
    meta = {"detector": cfg, "split_file": a.split, "dataset": attrs.get("dataset"),
            "protocol": attrs.get("protocol")}
    if cfg["kind"] == "coco_results":
        convert_results(module, [str(x) for x in data["paths"]], ids, cfg, a.out, a.instances,
                        meta)
    else:
        from pipeline.device import pick_device, set_threads  # torch: not for coco_results

        set_threads(a.threads)
        paths = [str(root / x) for x in data["paths"]]
        _exit_on_sigterm()
        run_detector(module, paths, ids, cfg, a.out, pick_device(a.device),
                     {**meta, "categories": module.categories(cfg)}, a.commit_images)
    log.info("wrote the detections of %d images to %s", len(ids), a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
