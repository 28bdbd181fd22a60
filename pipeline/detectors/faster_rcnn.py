"""MS COCO auxiliary semantics (paper §4.2): torchvision's COCO-trained Faster R-CNN.

:func:`detect` runs ``torchvision.models.detection.fasterrcnn_resnet50_fpn`` (ResNet-50 FPN,
``weights=cfg["weights"]``, default ``"DEFAULT"`` = ``COCO_V1``) on every image and returns COCO
results (``image_id``, ``category_id``, ``bbox`` [x, y, w, h] in pixels, ``score``) for all
detections scoring at least ``score_floor``; the auxiliary stage thresholds them later.

Label mapping. The detector predicts an index into its weights' ``meta["categories"]``: 91
entries, ``__background__`` at 0 and ``N/A`` at the ten category ids COCO never used, so entry
*i* is named like COCO category id *i*. :func:`label_to_coco_id` matches those names against
MS COCO 2017's ``(id, name)`` table (:data:`pipeline.data.coco.COCO2017_CATEGORIES`)
rather than assuming the identity, and drops background / ``N/A`` predictions. The contiguous
0..79 label columns are the ascending category ids (:func:`coco_id_to_column`), exactly as
:func:`pipeline.data.coco.load_coco_labels` builds the ground truth.

Config keys (``detector``; keys left out take the schema's defaults): ``weights`` ("DEFAULT" |
"COCO_V1" | null), ``checkpoint`` (a local copy of torchvision's COCO weights file, for machines
without internet; overrides ``weights``), ``weights_backbone`` (only with ``weights: null``),
``score_floor``, ``batch_size``, ``num_workers``, ``min_size`` / ``max_size`` (torchvision's
resizing), ``detections_per_img``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from pipeline import schema
from pipeline.data.coco import COCO2017_CATEGORIES
from pipeline.detectors import collect_detections

log = logging.getLogger("pipeline.detectors.faster_rcnn")


def _merged(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with the schema's ``detector`` defaults for the keys it leaves out."""
    return schema.fill("detector", {"kind": "faster_rcnn", **cfg})


def detector_categories(weights: Any = None) -> list[str]:
    """Category names indexed by the detector's label (the COCO_V1 list when ``weights`` is
    ``None``: the label space of torchvision's COCO detectors)."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    w = weights if weights is not None else FasterRCNN_ResNet50_FPN_Weights.COCO_V1
    return list(w.meta["categories"])


def label_to_coco_id(categories: Sequence[str],
                     coco_categories: Sequence[tuple[int, str]] = COCO2017_CATEGORIES
                     ) -> dict[int, int]:
    """Detector label index → COCO category id, matched by name.

    Background, ``N/A`` and names that are not COCO categories are left out (such predictions
    are dropped). Raises ``ValueError`` when a COCO category has no detector label.
    """
    by_name = {name: cid for cid, name in coco_categories}
    mapping = {i: by_name[n] for i, n in enumerate(categories) if n in by_name}
    lacking = sorted(set(by_name) - {categories[i] for i in mapping})
    if lacking:
        raise ValueError(f"the detector's categories lack COCO classes {lacking}; use "
                         "COCO-trained weights")
    if any(i != cid for i, cid in mapping.items()):
        log.info("detector labels are not COCO ids; mapped by name")
    return mapping


def categories(cfg: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The classes :func:`detect` emits, ``{"id": COCO category id, "name"}`` each: MS COCO
    2017's 80 (:func:`label_to_coco_id` refuses weights that lack any of them). Recorded in
    ``detections.h5`` so the auxiliary stage matches them to the dataset's classes by name."""
    return [{"id": cid, "name": name} for cid, name in COCO2017_CATEGORIES]


def coco_id_to_column(category_ids: Sequence[int] | None = None) -> dict[int, int]:
    """COCO category id → contiguous label column (ascending id: person 1 → 0 … toothbrush
    90 → 79)."""
    ids = sorted(category_ids) if category_ids is not None else \
        [cid for cid, _ in COCO2017_CATEGORIES]
    return {cid: j for j, cid in enumerate(ids)}


def _resolve_weights(name: Any) -> Any:
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights as W

    if name is None or (isinstance(name, str) and name.lower() in ("", "none", "null")):
        return None
    if isinstance(name, W):
        return name
    try:
        return W[str(name)] if str(name) != "DEFAULT" else W.DEFAULT
    except KeyError:
        raise ValueError(f"detector.weights '{name}' unknown; use DEFAULT, "
                         f"{', '.join(w.name for w in W)} or null") from None


def _resolve_backbone(name: Any) -> Any:
    from torchvision.models import ResNet50_Weights

    if name is None or (isinstance(name, str) and name.lower() in ("", "none", "null")):
        return None
    return ResNet50_Weights.DEFAULT if name == "DEFAULT" else ResNet50_Weights[str(name)]


def build_model(cfg: dict[str, Any]) -> tuple[torch.nn.Module, list[str]]:
    """The detector in eval mode and its category names (see the module docstring's keys)."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    c = _merged(cfg)
    weights = None if c["checkpoint"] else _resolve_weights(c["weights"])
    backbone = _resolve_backbone(c["weights_backbone"]) if weights is None else None
    model = fasterrcnn_resnet50_fpn(
        weights=weights, weights_backbone=backbone,
        box_score_thresh=float(c["score_floor"]), min_size=int(c["min_size"]),
        max_size=int(c["max_size"]), box_detections_per_img=int(c["detections_per_img"]))
    if c["checkpoint"]:
        state = torch.load(c["checkpoint"], map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
        log.info("loaded detector weights from %s", c["checkpoint"])
    elif weights is None:
        log.warning("Faster R-CNN without COCO weights (weights: null): its detections are "
                    "meaningless; use this only to test the code path")
    return model.eval(), detector_categories(weights)


class _Images(torch.utils.data.Dataset):
    """Decoded RGB images as float tensors (3, H, W) in [0, 1], or the error text."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | str]:
        try:
            with Image.open(self.paths[i]) as im:
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            return i, f"{type(e).__name__}: {e}"
        return i, torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def _collate(batch: list[tuple[int, torch.Tensor | str]]) -> list[tuple[int, torch.Tensor | str]]:
    return batch


def _device(device: str) -> torch.device:
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        log.warning("device '%s' requested but CUDA is not available; running on CPU", device)
        return torch.device("cpu")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def batch_images(cfg: dict[str, Any]) -> int:
    """Images per forward pass (``batch_size``): a resumed run restarts at a multiple of it, so
    every batch holds the same images as in an uninterrupted run."""
    return max(1, int(_merged(cfg)["batch_size"]))


def iter_detect(image_paths: Sequence[str], ids: np.ndarray, cfg: dict[str, Any],
                device: str = "cpu", *, progress: bool = True
                ) -> Iterator[tuple[int, list[dict[str, Any]] | None]]:
    """Run the detector image by image (in batches of :func:`batch_images`); yield
    ``(image id, detections)`` in order, ``None`` for an image that could not be decoded.

    Detections are COCO results ``{"image_id", "category_id" (COCO sparse id), "bbox"
    [x, y, w, h], "score"}`` with score ≥ ``score_floor``, best first. ``device``: ``cuda[:n]``,
    ``cpu`` or ``auto``; CUDA requested without a GPU falls back to the CPU with a warning.
    """
    ids = np.asarray(ids)
    if len(ids) != len(image_paths):
        raise ValueError(f"detect: {len(image_paths)} paths but {len(ids)} ids")
    c = _merged(cfg)
    floor = float(c["score_floor"])
    dev = _device(device)
    model, categories = build_model(c)
    model.to(dev)
    to_coco = label_to_coco_id(categories)
    loader = torch.utils.data.DataLoader(
        _Images(image_paths), batch_size=batch_images(c), shuffle=False,
        num_workers=int(c["num_workers"]), collate_fn=_collate,
        pin_memory=dev.type == "cuda")
    dropped = 0
    bar = tqdm(total=len(image_paths), desc="faster r-cnn", unit="img", mininterval=2,
               disable=not progress)
    with torch.inference_mode():
        for batch in loader:
            good = [(i, t) for i, t in batch if isinstance(t, torch.Tensor)]
            outputs = model([t.to(dev, non_blocking=True) for _, t in good]) if good else []
            by_index = {i: out for (i, _), out in zip(good, outputs, strict=True)}
            for i, t in batch:
                if i not in by_index:
                    log.warning("skipping unreadable image %s (%s)", image_paths[i], t)
                    yield int(ids[i]), None
                    continue
                out = by_index[i]
                boxes = out["boxes"].float().cpu().numpy()
                scores = out["scores"].float().cpu().numpy()
                labels = out["labels"].cpu().numpy()
                dets: list[dict[str, Any]] = []
                for box, score, label in zip(boxes, scores, labels, strict=True):
                    cid = to_coco.get(int(label))
                    if cid is None:
                        dropped += 1
                        continue
                    if score < floor:
                        continue
                    x1, y1, x2, y2 = (float(v) for v in box)
                    dets.append({"image_id": int(ids[i]), "category_id": cid,
                                 "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2),
                                          round(y2 - y1, 2)],
                                 "score": round(float(score), 5)})
                yield int(ids[i]), dets
            bar.update(len(batch))
    bar.close()
    if dropped:
        log.info("dropped %d detections of background / N/A labels", dropped)


def detect(image_paths: list[str], ids: np.ndarray, cfg: dict[str, Any],
           device: str = "cpu") -> tuple[list[dict[str, Any]], list[int]]:
    """Run the detector on every image; return (COCO results, ids of unreadable images).

    All detections in memory: for a few images (a search query). The ``detect`` stage streams
    :func:`iter_detect` to disk instead.
    """
    return collect_detections(iter_detect(image_paths, ids, cfg, device), len(image_paths))
