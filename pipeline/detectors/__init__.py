"""Object detectors that turn images into auxiliary semantics (COCO results format).

Each detector module that runs on images defines ``iter_detect(paths, ids, cfg, device)`` (one
image's detections at a time, streamed to disk by the ``detect`` stage), ``batch_images(cfg)``,
``detect(paths, ids, cfg, device)`` (all in memory, for a few images) and ``categories(cfg)``;
``coco_results`` reads a results file a user already has instead;
:data:`KINDS` maps a config's ``detector.kind`` to its module. :mod:`pipeline.detectors.multihot`
turns their detections into multi-hot auxiliary labels.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: ``detector.kind`` → module implementing it
KINDS = {
    "faster_rcnn": "pipeline.detectors.faster_rcnn",
    "cell_classifier": "pipeline.detectors.cell_mlp",
    "coco_results": "pipeline.detectors.coco_results",  # your own detector's results json
}


def detector_module(kind: str | None) -> ModuleType:
    """The module of detector ``kind`` (imported on use: torchvision is heavy).

    Raises:
        ValueError: ``kind`` is not one of :data:`KINDS`.
    """
    if kind not in KINDS:
        raise ValueError(f"config: detector.kind '{kind}' unknown; valid: {sorted(KINDS)}")
    return importlib.import_module(KINDS[kind])
