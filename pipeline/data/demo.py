"""The offline demo collection: multi-label mosaics of real Fashion-MNIST items in COCO format.

Each demo image is a ``grid × grid`` mosaic (default 2×2 cells of 56 px → 112×112 JPEG) in which
1 or 2 cells (``items_per_image``/``item_probs``) hold a Fashion-MNIST *training* item, upscaled
and placed with a small random offset; the other cells stay black. Its ground-truth labels are
the set of classes in the mosaic, written as one COCO instance (box = the item) per item in
``instances_all.json`` so the COCO code paths (pycocotools, split, features, detections) read
it as they read MS COCO. Fashion-MNIST's *test* items never appear in a mosaic: the demo's
"detector" (:mod:`pipeline.detectors.cell_mlp`) is trained on them.

The ``demo_images`` stage (:mod:`pipeline.stages.demo_images`) calls :func:`build_demo`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from pipeline import schema
from pipeline.artifacts import atomic_path
from pipeline.data import fashion_mnist

log = logging.getLogger("pipeline.demo")


def compose(items: np.ndarray, cells: np.ndarray, offsets: np.ndarray, grid: int,
            cell: int) -> tuple[np.ndarray, list[list[int]]]:
    """Place 28×28 ``items`` into ``cells`` of a black ``grid``×``grid`` mosaic.

    Each item is resized to ``cell - 8`` px and shifted by ``offsets`` (0..8 px, per axis)
    inside its cell. Returns the RGB mosaic (H, W, 3) uint8 and each item's COCO box.
    """
    side = grid * cell
    canvas = np.zeros((side, side), dtype=np.uint8)
    size = cell - 8
    boxes = []
    for item, c, (dy, dx) in zip(items, cells, offsets, strict=True):
        r, col = divmod(int(c), grid)
        img = np.asarray(Image.fromarray(item).resize((size, size), Image.BILINEAR))
        y0, x0 = r * cell + int(dy), col * cell + int(dx)
        canvas[y0:y0 + size, x0:x0 + size] = img
        boxes.append([x0, y0, size, size])
    return np.repeat(canvas[..., None], 3, axis=2), boxes


def build_demo(cfg: dict[str, Any], out_json: str | Path, out_images: str | Path) -> dict:
    """Write the demo images (JPEG) and their COCO ``instances`` file; returns the COCO dict.

    ``cfg``: the ``source.build`` section; keys left out take the schema's defaults.
    """
    cfg = schema.fill("source.build", cfg)
    rng = np.random.default_rng(int(cfg["seed"]))
    n, grid, cell = int(cfg["n_images"]), int(cfg["grid"]), int(cfg["cell"])
    counts = np.asarray(cfg["items_per_image"], dtype=int)
    probs = np.asarray(cfg["item_probs"], dtype=float)
    if counts.max() > grid * grid or len(counts) != len(probs) or abs(probs.sum() - 1) > 1e-6:
        raise ValueError("demo: items_per_image must fit the grid and item_probs must sum to 1 "
                         "with one probability per count")
    folder = fashion_mnist.locate(cfg.get("fashion_mnist_dir"))
    images, labels = fashion_mnist.load(folder, "train")
    out_images = Path(out_images)
    tmp_dir = out_images.with_name(f".{out_images.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    coco: dict[str, Any] = {
        "info": {"description": "lagnh-pipeline offline demo: Fashion-MNIST mosaics",
                 "source": str(folder), "config": cfg},
        "images": [], "annotations": [],
        "categories": [{"id": i + 1, "name": name, "supercategory": "fashion"}
                       for i, name in enumerate(fashion_mnist.CLASS_NAMES)],
    }
    pool = rng.permutation(len(images))
    used = 0
    try:
        for image_id in tqdm(range(1, n + 1), desc="demo mosaics", mininterval=2):
            k = int(rng.choice(counts, p=probs))
            idx = pool[used:used + k]
            used += k
            if used > len(pool):
                raise ValueError("demo: n_images asks for more items than Fashion-MNIST has")
            cells = rng.choice(grid * grid, size=k, replace=False)
            offsets = rng.integers(0, 9, size=(k, 2))
            mosaic, boxes = compose(images[idx], cells, offsets, grid, cell)
            name = f"{image_id:06d}.jpg"
            Image.fromarray(mosaic).save(tmp_dir / name, quality=int(cfg["jpeg_quality"]))
            coco["images"].append({"id": image_id, "file_name": name,
                                   "width": grid * cell, "height": grid * cell})
            for item, box in zip(idx, boxes, strict=True):
                coco["annotations"].append({
                    "id": len(coco["annotations"]) + 1, "image_id": image_id,
                    "category_id": int(labels[item]) + 1, "bbox": box,
                    "area": box[2] * box[3], "iscrowd": 0,
                    "fashion_mnist_train_index": int(item)})
        if out_images.exists():
            shutil.rmtree(out_images)
        os.replace(tmp_dir, out_images)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    with atomic_path(out_json) as tmp, open(tmp, "w") as fh:
        json.dump(coco, fh)
    log.info("demo: %d images, %d items into %s", n, len(coco["annotations"]), out_images)
    return coco



def new_mosaic(classes: list[str | int], build: dict[str, Any], instances: str | Path,
               out: str | Path, *, seed: int = 0) -> dict[str, Any]:
    """A new image made as the demo's mosaics are (:func:`compose`, the same geometry and JPEG
    quality when ``out`` is a .jpg) from Fashion-MNIST *training* items that no image of the
    demo collection ``instances`` uses: an image the pipeline has never seen, for ``search``.

    Args:
        classes: one item per entry, a class index 0-9 or a class name (``"Dress"``).
        build: the demo's ``source.build`` section (keys left out take the schema's defaults).
        instances: the demo's ``instances_all.json`` (its ``fashion_mnist_train_index`` values
            are the items to avoid).
        out: the image file to write.
        seed: chooses the items, their cells and offsets.

    Returns:
        ``{"out", "classes", "fashion_mnist_train_index", "cells"}``.
    """
    cfg = schema.fill("source.build", build)
    grid, cell = int(cfg["grid"]), int(cfg["cell"])
    names = list(fashion_mnist.CLASS_NAMES)
    wanted = []
    for c in classes:
        text = str(c)
        if text.isdigit() and int(text) < len(names):
            wanted.append(int(text))
        elif text in names:
            wanted.append(names.index(text))
        else:
            raise ValueError(f"class {c!r}: give an index 0-{len(names) - 1} or one of {names}")
    if not 1 <= len(wanted) <= grid * grid:
        raise ValueError(f"give 1 to {grid * grid} classes (the mosaic has {grid}x{grid} cells)")
    instances = Path(instances)
    if not instances.exists():
        raise FileNotFoundError(f"{instances} is missing; build the demo collection first: "
                                f"`snakemake --cores 4 {instances}`")
    with open(instances) as fh:
        used = {int(a["fashion_mnist_train_index"]) for a in json.load(fh)["annotations"]
                if "fashion_mnist_train_index" in a}
    images, labels = fashion_mnist.load(fashion_mnist.locate(cfg.get("fashion_mnist_dir")),
                                        "train")
    rng = np.random.default_rng(seed)
    items = []
    for c in wanted:
        free = np.setdiff1d(np.flatnonzero(labels == c), np.fromiter(used, int, len(used)))
        free = np.setdiff1d(free, np.asarray(items, dtype=int))
        if len(free) == 0:
            raise ValueError(f"no Fashion-MNIST training item of class {names[c]} is left "
                             "unused by the demo collection")
        items.append(int(rng.choice(free)))
    cells = rng.choice(grid * grid, size=len(items), replace=False)
    offsets = rng.integers(0, 9, size=(len(items), 2))
    mosaic, _ = compose(images[np.asarray(items)], cells, offsets, grid, cell)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fmt = "JPEG" if out.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    with atomic_path(out) as tmp:
        Image.fromarray(mosaic).save(tmp, format=fmt, **(
            {"quality": int(cfg["jpeg_quality"])} if fmt == "JPEG" else {}))
    return {"out": str(out), "classes": [names[c] for c in wanted],
            "fashion_mnist_train_index": items, "cells": [int(c) for c in cells]}
