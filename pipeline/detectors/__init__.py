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
import logging
from collections.abc import Iterable
from types import ModuleType
from typing import Any

log = logging.getLogger("pipeline.detectors")

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


def collect_detections(
    stream: Iterable[tuple[int, list[dict[str, Any]] | None]], n_images: int,
) -> tuple[list[dict[str, Any]], list[int]]:
    """All detections of an ``iter_detect`` stream in memory, and the ids of the images it
    could not read (``None`` detections; logged): what each detector's ``detect`` returns.

        >>> collect_detections([(1, [{"image_id": 1}]), (2, None), (3, [])], 3)
        ([{'image_id': 1}], [2])
    """
    dets: list[dict[str, Any]] = []
    skipped: list[int] = []
    for image_id, found in stream:
        if found is None:
            skipped.append(image_id)
        else:
            dets.extend(found)
    if skipped:
        log.warning("%d of %d images could not be read", len(skipped), n_images)
    return dets, skipped
