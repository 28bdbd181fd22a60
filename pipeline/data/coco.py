"""COCO-format annotations → image ids, file names and multi-hot category labels.

Labels are the categories present in an image's instance annotations, mapped from COCO's sparse
category ids to contiguous indices 0..C-1 in ascending category-id order (for MS COCO 2017 that is
the order of ``instances_*.json``'s ``categories``: person=0 … toothbrush=79).
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class CocoTable:
    """Images of one annotation file: ``ids`` (N,), ``file_names`` (N,), ``labels`` (N, C)."""

    ids: np.ndarray
    file_names: np.ndarray
    labels: np.ndarray
    category_ids: list[int]
    class_names: list[str]


def load_coco_labels(instances_json: str | os.PathLike,
                     category_ids: list[int] | None = None) -> CocoTable:
    """Read an ``instances_*.json`` with pycocotools and build multi-hot labels.

    Args:
        instances_json: path of a COCO instances file.
        category_ids: the category ids defining the label columns, in order (default: all
            categories of the file, ascending id). Pass the same list for every file of a dataset.
    """
    from pycocotools.coco import COCO

    path = Path(instances_json)
    if not path.exists():
        raise FileNotFoundError(f"{path}: COCO annotation file not found")
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            coco = COCO(str(path))
        except Exception as e:  # pycocotools raises bare AssertionError / JSONDecodeError
            raise ValueError(f"{path}: not a valid COCO instances file ({e})") from e
    if category_ids is None:
        category_ids = sorted(coco.getCatIds())
    col = {cid: i for i, cid in enumerate(category_ids)}
    names = [coco.cats[c]["name"] if c in coco.cats else str(c) for c in category_ids]
    img_ids = sorted(coco.getImgIds())
    labels = np.zeros((len(img_ids), len(category_ids)), dtype=np.uint8)
    row = {iid: i for i, iid in enumerate(img_ids)}
    for ann in coco.dataset.get("annotations", []):
        c = col.get(ann["category_id"])
        if c is None:
            raise ValueError(f"{path}: annotation {ann.get('id')} has category_id "
                             f"{ann['category_id']} not among the dataset's categories")
        r = row.get(ann["image_id"])
        if r is None:
            raise ValueError(f"{path}: annotation {ann.get('id')} has image_id "
                             f"{ann['image_id']!r}, which is not among the file's images; fix "
                             "the annotation or add the image to 'images'")
        labels[r, c] = 1
    files = np.asarray([coco.imgs[i]["file_name"] for i in img_ids], dtype=object)
    return CocoTable(np.asarray(img_ids, dtype=np.int64), files, labels, list(category_ids), names)


#: MS COCO 2017's 80 object categories as (category id, name), ascending id: the ``categories``
#: of ``instances_{train,val}2017.json``. Ids are sparse (1..90; 12, 26, 29, 30, 45, 66, 68, 69,
#: 71, 83 are unused); the contiguous label index of a category is its position in this table.
COCO2017_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"),
    (7, "train"), (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"),
    (13, "stop sign"), (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"),
    (18, "dog"), (19, "horse"), (20, "sheep"), (21, "cow"), (22, "elephant"), (23, "bear"),
    (24, "zebra"), (25, "giraffe"), (27, "backpack"), (28, "umbrella"), (31, "handbag"),
    (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"), (36, "snowboard"),
    (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"),
    (46, "wine glass"), (47, "cup"), (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"),
    (52, "banana"), (53, "apple"), (54, "sandwich"), (55, "orange"), (56, "broccoli"),
    (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"), (62, "chair"),
    (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"),
    (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"),
    (77, "cell phone"), (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"),
    (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"),
    (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)
