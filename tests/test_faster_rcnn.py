"""Faster R-CNN detector stage: output format, label mapping, thresholding, unreadable images.

The detector runs without weights (none can be downloaded here), so no test looks at *what*
it detects.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.data.coco import COCO2017_CATEGORIES
from pipeline.detectors import faster_rcnn
from pipeline.detectors.multihot import scores_to_multihot

TINY = {"weights": None, "weights_backbone": None, "min_size": 224, "max_size": 224,
        "score_floor": 0.3, "batch_size": 2, "num_workers": 0, "detections_per_img": 20}


def test_detect_output_format(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """2 images and a corrupt one, batches of 2; asking for CUDA without a GPU falls back."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate([(160, 120), (100, 140)]):
        p = tmp_path / f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8 this is not really a jpeg" * 7)
    paths.insert(1, str(bad))
    ids = np.array([42, 7, 1000], dtype=np.int64)
    with caplog.at_level(logging.WARNING, logger="pipeline.detectors.faster_rcnn"):
        dets, skipped = faster_rcnn.detect(paths, ids, TINY, "cuda")
    assert skipped == [7]
    assert "corrupt.jpg" in caplog.text
    if not torch.cuda.is_available():
        assert "running on CPU" in caplog.text
    assert isinstance(dets, list)
    valid_ids = {cid for cid, _ in COCO2017_CATEGORIES}
    sizes = {42: (160, 120), 1000: (100, 140)}
    for d in dets:
        assert set(d) == {"image_id", "category_id", "bbox", "score"}
        assert d["image_id"] in (42, 1000)
        assert isinstance(d["category_id"], int) and d["category_id"] in valid_ids
        x, y, w, h = d["bbox"]
        assert len(d["bbox"]) == 4 and w >= 0 and h >= 0
        iw, ih = sizes[d["image_id"]]
        assert -0.01 <= x <= iw + 0.01 and -0.01 <= y <= ih + 0.01
        assert TINY["score_floor"] <= d["score"] <= 1.0
    assert [d["image_id"] for d in dets] == sorted((d["image_id"] for d in dets),
                                                   key=[42, 1000].index)


def test_label_mapping_torchvision_to_coco() -> None:
    cats = faster_rcnn.detector_categories()
    mapping = faster_rcnn.label_to_coco_id(cats)
    assert len(cats) == 91 and len(mapping) == 80
    # torchvision's label index is the COCO category id; background and N/A slots are dropped
    assert all(i == cid for i, cid in mapping.items())
    for dropped in (0, 12, 26, 29, 30, 45, 66, 68, 69, 71, 83):
        assert dropped not in mapping
    assert mapping[1] == 1 and mapping[13] == 13 and mapping[90] == 90
    col = faster_rcnn.coco_id_to_column()
    assert len(col) == 80 and sorted(col.values()) == list(range(80))
    assert col[1] == 0            # person
    assert col[2] == 1            # bicycle
    assert col[13] == 11          # stop sign (after the gap at 12)
    assert col[27] == 24          # backpack (after the gap at 26)
    assert col[67] == 60          # dining table
    assert col[90] == 79          # toothbrush
    names = dict(COCO2017_CATEGORIES)
    assert [cats[i] for i in (1, 13, 67, 90)] == [names[1], names[13], names[67], names[90]]


def test_label_mapping_by_name_not_position() -> None:
    shuffled = ["__background__", "toothbrush", "N/A"] + \
        [n for _, n in COCO2017_CATEGORIES if n != "toothbrush"]
    mapping = faster_rcnn.label_to_coco_id(shuffled)
    assert mapping[1] == 90 and mapping[3] == 1 and 2 not in mapping
    with pytest.raises(ValueError, match="toothbrush"):
        faster_rcnn.label_to_coco_id(shuffled[:1] + shuffled[2:])


def test_scores_to_multihot_threshold_ties() -> None:
    dets = [
        {"image_id": 10, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.7},   # = t
        {"image_id": 10, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.2},
        {"image_id": 10, "category_id": 90, "bbox": [0, 0, 1, 1], "score": 0.69999},
        {"image_id": 11, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.95},
        {"image_id": 11, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.1},
        {"image_id": 12, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.3},
        {"image_id": 99, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.9},    # not in ids
        {"image_id": 12, "category_id": 5, "bbox": [0, 0, 1, 1], "score": 0.9},    # not a column
    ]
    labels, scores = scores_to_multihot(dets, np.array([12, 10, 11, 13]), [1, 3, 90], 0.7)
    assert labels.dtype == np.uint8 and scores.dtype == np.float16
    assert labels.tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]]
    want = np.array([[0, 0.3, 0], [0.7, 0, 0.69999], [0, 0.95, 0], [0, 0, 0]], np.float16)
    assert np.array_equal(scores, want)
    # threshold 0: present only where there is a detection
    labels0, _ = scores_to_multihot(dets, np.array([12, 10, 11, 13]), [1, 3, 90], 0.0)
    assert labels0.tolist() == [[0, 1, 0], [1, 0, 1], [0, 1, 0], [0, 0, 0]]


def test_scores_to_multihot_empty() -> None:
    labels, scores = scores_to_multihot([], np.array([1, 2]), [1, 2, 3], 0.5)
    assert labels.shape == scores.shape == (2, 3) and not labels.any()


COCO_NAMES = [name for _, name in COCO2017_CATEGORIES]
COCO_CATS = [{"id": cid, "name": name} for cid, name in COCO2017_CATEGORIES]


def _aux_run(tmp_path: Path, class_names: list[str], category_ids: list[int],
             dets: list[dict], class_map: dict | None = None) -> tuple[dict, dict]:
    """split.h5 of 3 images with ``class_names`` → the auxiliary stage on Faster R-CNN's
    ``dets`` → aux.h5's data and attrs."""
    import json

    from pipeline.artifacts import read_h5
    from pipeline.data.split_table import SplitTable, write_split
    from pipeline.detectors.store import DetectionWriter, dets_to_arrays
    from pipeline.stages.auxiliary import main

    n = len(class_names)
    table = SplitTable(np.array([1, 2, 3]), np.array(["a.jpg", "b.jpg", "c.jpg"], dtype=object),
                       np.zeros((3, n), np.uint8), np.array([0, 1, 2], np.uint8), class_names,
                       str(tmp_path), "random", {"category_ids": category_ids})
    write_split(table, tmp_path / "split.h5", "mine", 0)
    with DetectionWriter(tmp_path / "det.h5", ids=np.array([1, 2, 3]), resume_key={},
                         attrs={"detector": {"kind": "faster_rcnn"},
                                "categories": COCO_CATS}) as w:
        w.add(dets_to_arrays([[d for d in dets if d["image_id"] == i] for i in (1, 2, 3)]))
        w.commit()
    argv = ["--split", str(tmp_path / "split.h5"), "--detections", str(tmp_path / "det.h5"),
            "--threshold", "0.5", "--out", str(tmp_path / "aux.h5")]
    if class_map is not None:
        argv += ["--class-map-json", json.dumps(class_map)]
    assert main(argv) == 0
    return read_h5(tmp_path / "aux.h5", stage="auxiliary")


def test_detections_reach_the_column_of_their_name_not_of_their_id(tmp_path: Path) -> None:
    """A COCO-format collection numbering the 80 classes 1..80: Faster R-CNN's "stop sign"
    (COCO id 13) must not become the collection's id 13 ("parking meter"), nor "toothbrush"
    (COCO id 90) vanish."""
    dets = [{"image_id": 1, "category_id": 13, "bbox": [0, 0, 1, 1], "score": 0.9},
            {"image_id": 2, "category_id": 90, "bbox": [0, 0, 1, 1], "score": 0.8}]
    data, attrs = _aux_run(tmp_path, COCO_NAMES, list(range(1, 81)), dets)
    labels = data["aux_labels"]
    assert labels.sum() == 2
    assert labels[0, COCO_NAMES.index("stop sign")] == 1
    assert labels[1, COCO_NAMES.index("toothbrush")] == 1
    assert attrs["class_map"] == {n: n for n in COCO_NAMES}


def test_mismatched_classes_are_refused_by_name(tmp_path: Path) -> None:
    """A collection with its own classes: the detector's extra classes and the collection's
    unproduced ones are named; an explicit class_map renames, drops, and is recorded."""
    own = ["person", "auto", "kite", "zebra crossing"]
    dets = [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.9},   # car
            {"image_id": 3, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.7},   # person
            {"image_id": 2, "category_id": 18, "bbox": [0, 0, 1, 1], "score": 0.9}]  # dog
    with pytest.raises(ValueError) as err:
        _aux_run(tmp_path, own, [1, 2, 3, 4], dets)
    text = str(err.value)
    assert "'auto'" in text and "'zebra crossing'" in text and "'toothbrush'" in text
    assert "'person'" not in text.split("never produces")[1]
    drop = {n: None for n in COCO_NAMES if n not in ("person", "car", "kite", "traffic light")}
    cmap = {**drop, "car": "auto", "traffic light": "zebra crossing"}
    data, attrs = _aux_run(tmp_path, own, [1, 2, 3, 4], dets, cmap)
    assert data["aux_labels"].tolist() == [[0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]]
    assert attrs["class_map"]["car"] == "auto" and attrs["class_map"]["dog"] is None
    with pytest.raises(ValueError, match=r"does not have: \['lorry'\]"):
        _aux_run(tmp_path, own, [1, 2, 3, 4], dets, {**cmap, "lorry": "auto"})


def test_detectors_declare_their_classes() -> None:
    """detections.h5 records each detector's classes; the demo's match by name."""
    from pipeline.data import fashion_mnist
    from pipeline.detectors import cell_mlp
    from pipeline.detectors.multihot import match_classes

    assert faster_rcnn.categories() == COCO_CATS
    cols, _ = match_classes(cell_mlp.categories(), fashion_mnist.CLASS_NAMES)
    assert cols == {i + 1: i for i in range(10)}
