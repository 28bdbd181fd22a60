"""Fashion-MNIST's original idx files: find them (Debian package or a cache) or download them.

The offline demo is built from these real images. Search order for the four files
``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``:

1. the folder given in config (``source.fashion_mnist_dir``), if any;
2. Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``);
3. ``resources/fashion-mnist`` (a previous download);
4. the upstream download (the same files torchvision's ``FashionMNIST`` fetches), into 3.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
#: (md5) of the upstream files, as published by Zalando Research and torchvision
MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
UPSTREAM = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CACHE_DIR = Path("resources/fashion-mnist")
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]


def _has_all(folder: Path) -> bool:
    return all((folder / f).is_file() for f in FILES.values())


def locate(folder: str | Path | None = None, cache: str | Path = CACHE_DIR,
           download: bool = True) -> Path:
    """Return a folder holding the four files, downloading them into ``cache`` if needed."""
    if folder:
        if _has_all(Path(folder)):
            return Path(folder)
        raise FileNotFoundError(
            f"{folder}: Fashion-MNIST files {sorted(FILES.values())} not found "
            "(config key source.build.fashion_mnist_dir)")
    for cand in (DEBIAN_DIR, Path(cache)):
        if _has_all(cand):
            log.info("Fashion-MNIST found in %s", cand)
            return cand
    if not download:
        raise FileNotFoundError(
            "Fashion-MNIST not found: install Debian's dataset-fashion-mnist package "
            f"or put the four idx .gz files in {cache}")
    from pipeline.data.archives import download as fetch

    cache = Path(cache)
    log.info("downloading Fashion-MNIST from %s into %s", UPSTREAM, cache)
    for name in FILES.values():
        if not (cache / name).is_file():
            fetch(UPSTREAM + name, cache / name, MD5[name])
    return cache


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (gzip-compressed) as a uint8 array of its stated shape."""
    path = Path(path)
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    if len(data) < 8 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: truncated ({body.size} bytes for shape {shape})")
    return body.reshape(shape)


def load(folder: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) of ``part`` = ``train`` or ``test``."""
    return (read_idx(folder / FILES[f"{part}_images"]),
            read_idx(folder / FILES[f"{part}_labels"]))
