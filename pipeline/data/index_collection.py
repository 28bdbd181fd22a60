"""An additional image collection to encode with a dataset's trained models (config
``{dataset}.index.{name}``): its table of images, written as an index ``split.h5``.

Every row is a database row (split code :data:`~pipeline.data.split_table.RETRIEVAL`); the
label columns are the dataset's classes (ground truth, from a COCO instances file when one is
given, matched by class name; only shown by ``search``, never used to encode).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.data.split_table import RETRIEVAL, SplitTable

log = logging.getLogger("pipeline.index")

#: file name endings read as images when an index is a plain folder
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def folder_images(folder: str | Path) -> list[str]:
    """Image files under ``folder`` (recursively), relative to it, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: index images folder not found (config key "
                                "index.NAME.images)")
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def index_table(images: str | Path, instances: str | Path | None,
                class_names: Sequence[str], name: str) -> SplitTable:
    """The index's rows: a COCO instances file's images (ids and ground truth from it), or every
    image file of the ``images`` folder (ids 1..N in sorted path order, no ground truth).

    Raises:
        FileNotFoundError: the folder or the instances file is missing.
        ValueError: no images, or listed files missing under ``images``.
    """
    names = list(class_names)
    if instances:
        from pipeline.data.coco import load_coco_labels

        table = load_coco_labels(instances)
        column = {n: j for j, n in enumerate(names)}
        labels = np.zeros((len(table.ids), len(names)), np.uint8)
        for j, cls in enumerate(table.class_names):
            if cls in column:
                labels[:, column[cls]] = table.labels[:, j]
        other = [c for c in table.class_names if c not in column]
        if other:
            log.warning("%s: classes %s are not the dataset's; their labels are not kept",
                        instances, other)
        ids, paths = table.ids, np.asarray(table.file_names, dtype=object)
        missing = [p for p in paths if not (Path(images) / p).exists()]
        if missing:
            raise ValueError(f"{len(missing)} images of {instances} are missing under {images}, "
                             f"e.g. {missing[:3]}; check index.{name}.images")
        source = "instances"
    else:
        files = folder_images(images)
        ids = np.arange(1, len(files) + 1, dtype=np.int64)
        paths = np.asarray(files, dtype=object)
        labels = np.zeros((len(files), len(names)), np.uint8)
        source = "folder"
    if len(ids) == 0:
        raise ValueError(f"index {name}: no images")
    return SplitTable(ids, paths, labels, np.full(len(ids), RETRIEVAL, np.uint8), names,
                      str(images), "index",
                      {"index": name, "index_source": source,
                       "has_ground_truth": bool(instances)})
