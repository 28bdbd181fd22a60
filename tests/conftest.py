"""Shared fixtures: tiny fake Fashion-MNIST files and tiny COCO-format collections."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def job_counts(text: str) -> dict[str, int]:
    """Rule -> number of jobs in the "Job stats" table of Snakemake's output ({} without one,
    e.g. "Nothing to be done")."""
    if "Job stats:" not in text:
        return {}
    table = text.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.MULTILINE)}


def write_idx(path: Path, arr: np.ndarray) -> None:
    """Write a uint8 array as a gzip idx file (the format of MNIST/Fashion-MNIST)."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


@pytest.fixture
def fake_fmnist(tmp_path: Path) -> Path:
    """A folder with fake Fashion-MNIST files (:func:`write_fake_fmnist`)."""
    return write_fake_fmnist(tmp_path / "fmnist")


def write_fake_fmnist(folder: Path) -> Path:
    """Create ``folder`` with the four Fashion-MNIST idx files: 200 train and 1,000 test items
    whose brightness depends on the class (so a classifier can learn them)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for part, n in (("train", 200), ("t10k", 1000)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 10, size=(n, 28, 28))
        for i, c in enumerate(labels):
            images[i, 4:24, 4:24] = 60 + 19 * c  # a square whose brightness tells the class
        write_idx(folder / f"{part}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{part}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture
def coco_collection(tmp_path: Path) -> dict:
    """12 small JPEGs with a COCO instances file: 3 sparse categories (ids 2, 5, 9), image 12
    has no annotation."""
    root = tmp_path / "coll"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(1)
    cats = [{"id": 2, "name": "cat"}, {"id": 5, "name": "dog"}, {"id": 9, "name": "kite"}]
    images, anns = [], []
    for i in range(1, 13):
        name = f"img{i:02d}.jpg"
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(
            root / "images" / name)
        images.append({"id": i, "file_name": name, "width": 32, "height": 24})
        if i < 12:
            for cid in ([2, 5, 9][i % 3], [2, 5, 9][(i // 3) % 3]):
                anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cid,
                             "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0})
    path = root / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return {"root": root, "instances": path, "images": root / "images", "annotations": anns}


def venv_env() -> dict:
    """Environment whose PATH starts with this interpreter's folder, so the workflow's
    ``python -m pipeline...`` commands and ``snakemake`` run in the same environment."""
    import os
    import sys

    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env
