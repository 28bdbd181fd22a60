"""The offline demo: idx reading, mosaics and their COCO file, the cell-classifier detector."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.data import fashion_mnist
from pipeline.data.coco import load_coco_labels
from pipeline.data.demo import build_demo, compose
from pipeline.detectors import cell_mlp


def test_read_idx_round_trip_and_truncation(fake_fmnist, tmp_path):
    images, labels = fashion_mnist.load(fake_fmnist, "train")
    assert images.shape == (200, 28, 28) and images.dtype == np.uint8
    assert labels[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as fh:
        fh.write(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"\x01\x02")
    with pytest.raises(ValueError, match="truncated"):
        fashion_mnist.read_idx(bad)


def test_locate_prefers_given_folder_and_reports_missing(fake_fmnist, tmp_path):
    assert fashion_mnist.locate(fake_fmnist) == fake_fmnist
    with pytest.raises(FileNotFoundError, match="source.build.fashion_mnist_dir"):
        fashion_mnist.locate(tmp_path / "empty")


def test_compose_places_items_in_their_cells():
    items = np.full((2, 28, 28), 200, dtype=np.uint8)
    mosaic, boxes = compose(items, np.array([0, 3]), np.array([[0, 0], [8, 4]]), 2, 56)
    assert mosaic.shape == (112, 112, 3)
    assert boxes == [[0, 0, 48, 48], [60, 64, 48, 48]]
    assert mosaic[10, 10, 0] > 150 and mosaic[100, 100, 0] > 150
    assert mosaic[10, 100].sum() == 0  # cell 1 stays empty


def test_build_demo_writes_coco_files_pycocotools_reads(fake_fmnist, tmp_path):
    cfg = {"n_images": 30, "grid": 2, "cell": 32, "items_per_image": [1, 2],
           "item_probs": [0.5, 0.5], "seed": 3, "fashion_mnist_dir": str(fake_fmnist)}
    coco = build_demo(cfg, tmp_path / "inst.json", tmp_path / "images")
    assert len(list((tmp_path / "images").glob("*.jpg"))) == 30
    with Image.open(tmp_path / "images" / "000001.jpg") as im:
        assert im.size == (64, 64) and im.format == "JPEG"
    table = load_coco_labels(tmp_path / "inst.json")
    assert table.labels.shape == (30, 10)
    assert 1 <= table.labels.sum(1).min() and table.labels.sum(1).max() <= 2
    used = [a["fashion_mnist_train_index"] for a in coco["annotations"]]
    assert len(used) == len(set(used))  # every item used once
    again = build_demo(cfg, tmp_path / "inst2.json", tmp_path / "images2")
    assert json.dumps(again["annotations"]) == json.dumps(coco["annotations"])
    assert not list(tmp_path.glob(".images*"))  # no temp folder left


def test_build_demo_rejects_bad_probabilities(fake_fmnist, tmp_path):
    cfg = {"n_images": 3, "grid": 2, "cell": 32, "items_per_image": [1, 2],
           "item_probs": [0.5, 0.6], "seed": 0, "fashion_mnist_dir": str(fake_fmnist)}
    with pytest.raises(ValueError, match="item_probs must sum to 1"):
        build_demo(cfg, tmp_path / "i.json", tmp_path / "im")


def test_cell_classifier_trains_on_test_items_and_detects(fake_fmnist, tmp_path):
    torch.set_num_threads(1)
    demo_cfg = {"n_images": 20, "grid": 2, "cell": 32, "items_per_image": [1],
                "item_probs": [1.0], "seed": 0, "fashion_mnist_dir": str(fake_fmnist)}
    build_demo(demo_cfg, tmp_path / "inst.json", tmp_path / "images")
    ckpt = cell_mlp.train({"seed": 0, "cell": 32, "grid": 2, "epochs": 60,
                                  "lr": 0.01, "hidden": [64], "n_empty": 100,
                                  "fashion_mnist_dir": str(fake_fmnist)})
    assert "test part" in ckpt["trained_on"]
    torch.save(ckpt, tmp_path / "cc.pt")
    paths = [str(p) for p in sorted((tmp_path / "images").glob("*.jpg"))]
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    dets, skipped = cell_mlp.detect(
        paths + [str(tmp_path / "broken.jpg")], np.arange(1, 22),
        {"checkpoint": str(tmp_path / "cc.pt"), "score_floor": 0.3})
    assert skipped == [21]
    assert {"image_id", "category_id", "bbox", "score"} <= set(dets[0])
    assert all(1 <= d["category_id"] <= 10 and d["score"] >= 0.3 for d in dets)
    # the fake classes differ only in brightness (hard for an MLP under position jitter):
    # held-out accuracy is about 65%; a wrong category mapping would give about 2 of 20
    truth = load_coco_labels(tmp_path / "inst.json").labels
    best = {}
    for d in dets:
        if d["score"] > best.get(d["image_id"], (0, 0))[1]:
            best[d["image_id"]] = (d["category_id"], d["score"])
    hits = sum(int(truth[i - 1, c - 1]) for i, (c, _) in best.items())
    assert hits >= 4
