"""The demo's detector: an MLP item classifier applied to every cell of a mosaic.

It plays the part Faster R-CNN plays for MS COCO: a real model, run on the demo's image files,
whose outputs (COCO-format detections with scores) become the auxiliary labels through the same
thresholding code. It is trained only on Fashion-MNIST's *test* items (which never appear in a
demo mosaic), rendered into a cell exactly as the mosaics are, plus blank cells as an 11th
"empty" class, so its mistakes on the demo are those of a model on unseen images.

The ``cell_classifier`` stage (:mod:`pipeline.stages.cell_classifier`) trains it with
:func:`train`; the ``detect`` stage streams :func:`iter_detect` to disk (detector kind
``cell_classifier``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from pipeline import schema
from pipeline.data import fashion_mnist
from pipeline.data.demo import compose
from pipeline.detectors import collect_detections

log = logging.getLogger("pipeline.cell_classifier")
EMPTY = 10  # index of the "empty cell" class


def make_mlp(hidden: tuple[int, ...] = (512, 256), n_out: int = 11) -> nn.Sequential:
    """784 → hidden… → ``n_out`` MLP with ReLU (28×28 grayscale cell in [0, 1])."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = 28 * 28
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def cell_to_input(cell: np.ndarray) -> np.ndarray:
    """A grayscale cell (any size) → 28×28 float32 in [0, 1] (the classifier's input)."""
    img = Image.fromarray(cell).resize((28, 28), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 255.0


def _training_cells(images: np.ndarray, labels: np.ndarray, cell: int, n_empty: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for item, label in zip(images, labels, strict=True):
        offset = rng.integers(0, 9, size=(1, 2))
        mosaic, _ = compose(item[None], np.array([0]), offset, 1, cell)
        xs.append(cell_to_input(mosaic[..., 0]))
        ys.append(int(label))
    for _ in range(n_empty):
        noise = rng.integers(0, 6, size=(cell, cell)).astype(np.uint8)
        xs.append(cell_to_input(noise))
        ys.append(EMPTY)
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def train(cfg: dict[str, Any]) -> dict[str, Any]:
    """Train the cell classifier on Fashion-MNIST's test items; returns a checkpoint dict.

    ``cfg``: the ``detector.train`` section (keys left out take the schema's defaults) plus the
    mosaic geometry ``cell``, ``grid`` and ``fashion_mnist_dir`` of ``source.build``.
    """
    cfg = schema.fill("detector.train", cfg)
    seed = int(cfg["seed"])
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    folder = fashion_mnist.locate(cfg.get("fashion_mnist_dir"))
    images, labels = fashion_mnist.load(folder, "test")
    x, y = _training_cells(images, labels, int(cfg["cell"]), int(cfg["n_empty"]), rng)
    hidden = tuple(cfg["hidden"])
    model = make_mlp(hidden)
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    n_val = len(xt) // 10
    perm = torch.from_numpy(rng.permutation(len(xt)))
    val, tr = perm[:n_val], perm[n_val:]
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for epoch in range(int(cfg["epochs"])):
        model.train()
        order = tr[torch.randperm(len(tr), generator=gen)]
        for i in range(0, len(order), 256):
            b = order[i:i + 256]
            loss = nn.functional.cross_entropy(model(xt[b]), yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = (model(xt[val]).argmax(1) == yt[val]).float().mean().item()
        log.info("epoch %d loss %.4f held-out accuracy %.4f", epoch + 1, loss.item(), acc)
    log.info("trained in %.1f s; held-out accuracy %.4f", time.time() - t0, acc)
    return {"state_dict": model.state_dict(), "hidden": list(hidden), "cell": int(cfg["cell"]),
            "grid": int(cfg["grid"]), "heldout_accuracy": acc,
            "trained_on": f"{folder} (test part)"}


def load_model(path: str | Path) -> tuple[nn.Sequential, dict[str, Any]]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = make_mlp(tuple(ckpt["hidden"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def categories(cfg: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The classes :func:`detect` emits: ``{"id": index + 1, "name"}`` of Fashion-MNIST's 10
    (the empty class is never emitted); the demo's categories have the same names."""
    return [{"id": i + 1, "name": name} for i, name in enumerate(fashion_mnist.CLASS_NAMES)]


def batch_images(cfg: dict[str, Any]) -> int:
    """Images whose cells go through the MLP together (``detector.batch_size``): a resumed run
    restarts at a multiple of it, so every batch holds the same cells as in an uninterrupted
    run."""
    return max(1, int(schema.fill("detector", {"kind": "cell_classifier", **cfg})["batch_size"]))


def iter_detect(image_paths: Sequence[str], ids: np.ndarray, cfg: dict[str, Any],
                device: str = "cpu", *, progress: bool = True
                ) -> Iterator[tuple[int, list[dict[str, Any]] | None]]:
    """Classify every cell of every image; yield ``(image id, detections)`` in order, ``None``
    for an unreadable image (warned). One detection per (cell, class) with score ≥
    ``score_floor``, except the empty class; category ids are class index + 1 (the demo's COCO
    categories), ``bbox`` the cell. The cells of :func:`batch_images` images form one batch."""
    cfg = schema.fill("detector", {"kind": "cell_classifier", **cfg})
    model, ckpt = load_model(cfg["checkpoint"])
    grid, floor = ckpt["grid"], float(cfg["score_floor"])
    step = batch_images(cfg)
    items = list(zip(image_paths, np.asarray(ids).tolist(), strict=True))
    for b in tqdm(range(0, len(items), step), desc="detect", unit="batch", mininterval=2,
                  disable=not progress):
        cells: list[np.ndarray] = []
        meta: list[tuple[int, list[int]]] = []  # (position in batch, cell box)
        found: list[tuple[int, list[dict[str, Any]] | None]] = []
        for path, image_id in items[b:b + step]:
            try:
                with Image.open(path) as im:
                    gray = np.asarray(im.convert("L"))
            except (OSError, ValueError) as e:
                log.warning("skipping unreadable image %s (%s)", path, e)
                found.append((int(image_id), None))
                continue
            found.append((int(image_id), []))
            h, w = gray.shape
            ch, cw = h // grid, w // grid
            for r in range(grid):
                for c in range(grid):
                    cells.append(cell_to_input(gray[r * ch:(r + 1) * ch, c * cw:(c + 1) * cw]))
                    meta.append((len(found) - 1, [c * cw, r * ch, cw, ch]))
        if cells:
            with torch.no_grad():
                prob = torch.softmax(model(torch.from_numpy(np.stack(cells))), 1).numpy()
            for (pos, box), p in zip(meta, prob, strict=True):
                image_id, dets = found[pos]
                for c in np.flatnonzero(p[:EMPTY] >= floor):
                    dets.append({"image_id": image_id, "category_id": int(c) + 1,
                                 "bbox": box, "score": round(float(p[c]), 5)})
        yield from found


def detect(image_paths: list[str], ids: np.ndarray, cfg: dict[str, Any],
           device: str = "cpu") -> tuple[list[dict[str, Any]], list[int]]:
    """All detections of ``image_paths`` in memory (:func:`iter_detect`), and the ids of the
    unreadable images: for a few images; the ``detect`` stage streams to disk instead."""
    return collect_detections(iter_detect(image_paths, ids, cfg, device), len(image_paths))
