"""Object detectors that turn images into auxiliary semantics (COCO results format).

Each detector module defines ``detect(paths, ids, cfg, device)`` and ``categories(cfg)``;
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
}


def detector_module(kind: str | None) -> ModuleType:
    """The module of detector ``kind`` (imported on use: torchvision is heavy).

    Raises:
        ValueError: ``kind`` is not one of :data:`KINDS`.
    """
    if kind not in KINDS:
        raise ValueError(f"config: detector.kind '{kind}' unknown; valid: {sorted(KINDS)}")
    return importlib.import_module(KINDS[kind])
