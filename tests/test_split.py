"""Split stage: COCO-format reading, label mapping, seeded disjoint splits, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from pipeline.artifacts import read_h5
from pipeline.data.coco import load_coco_labels
from pipeline.data.split_table import build_split, random_split, write_split


def test_coco_labels_map_sparse_ids_in_ascending_order(coco_collection):
    t = load_coco_labels(coco_collection["instances"])
    assert t.category_ids == [2, 5, 9] and t.class_names == ["cat", "dog", "kite"]
    assert list(t.ids) == list(range(1, 13))
    # image 4: categories [2,5,9][4 % 3] = 5 and [2,5,9][(4 // 3) % 3] = 5 -> only "dog"
    assert t.labels[3].tolist() == [0, 1, 0]
    # image 5: 9 and 5 -> dog, kite
    assert t.labels[4].tolist() == [0, 1, 1]
    assert t.labels[11].sum() == 0  # unannotated
    assert t.file_names[0] == "img01.jpg"


def test_random_split_sizes_disjoint_and_seeded():
    a = random_split(20, 5, 3, None, seed=1)
    assert (a == 0).sum() == 5 and (a == 1).sum() == 3 and (a == 2).sum() == 12
    np.testing.assert_array_equal(a, random_split(20, 5, 3, None, seed=1))
    assert not np.array_equal(a, random_split(20, 5, 3, None, seed=2))
    b = random_split(20, 5, 3, 4, seed=1)
    assert (b == 255).sum() == 8
    with pytest.raises(ValueError, match="do not fit 20 images"):
        random_split(20, 15, 10, None, seed=0)


def test_build_split_drops_unannotated_and_writes_artifact(coco_collection, tmp_path):
    src = {"kind": "coco_format", "instances": str(coco_collection["instances"]),
           "images": str(coco_collection["images"])}
    table = build_split(src, {"protocol": "random", "train": 4, "query": 2, "seed": 0,
                              "empty_images": "drop"})
    assert len(table.ids) == 11 and 12 not in table.ids
    assert table.attrs["n_empty_images"] == 1
    out = tmp_path / "split.h5"
    write_split(table, out, "mine", 0)
    data, attrs = read_h5(out, stage="split")
    assert attrs["counts"] == {"train": 4, "query": 2, "retrieval": 5}
    assert attrs["class_names"] == ["cat", "dog", "kite"]
    assert data["labels"].dtype == np.uint8 and data["labels"].shape == (11, 3)
    kept = build_split(src, {"protocol": "random", "train": 4, "query": 2, "seed": 0,
                             "empty_images": "keep"})
    assert len(kept.ids) == 12


def test_empty_split_and_unknown_kind_are_clear_errors(coco_collection):
    src = {"kind": "coco_format", "instances": str(coco_collection["instances"]),
           "images": str(coco_collection["images"])}
    with pytest.raises(ValueError, match="do not fit 11 images"):
        build_split(src, {"protocol": "random", "train": 11, "query": 1, "seed": 0})
    with pytest.raises(ValueError, match="unknown dataset kind 'imagenet'"):
        build_split({"kind": "imagenet"}, {"protocol": "random"})


def test_missing_and_corrupt_annotation_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_coco_labels(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not a valid COCO instances file"):
        load_coco_labels(bad)


def test_split_cli_leaves_no_output_on_error(coco_collection, tmp_path):
    out = tmp_path / "s.h5"
    src = json.dumps({"kind": "coco_format", "instances": str(coco_collection["instances"]),
                      "images": str(coco_collection["images"])})
    bad = subprocess.run([sys.executable, "-m", "pipeline.stages.split", "--dataset", "x",
                          "--source-json", src, "--split-json",
                          json.dumps({"protocol": "random", "train": 50, "query": 2, "seed": 0}),
                          "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode != 0 and "do not fit" in bad.stderr
    assert not out.exists()


def test_annotation_of_an_unknown_image_is_named(coco_collection, tmp_path):
    coco = json.loads(coco_collection["instances"].read_text())
    coco["annotations"].append({"id": 999, "image_id": 77, "category_id": 2,
                                "bbox": [1, 1, 2, 2], "area": 4, "iscrowd": 0})
    bad = tmp_path / "orphan.json"
    bad.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match=r"orphan\.json: annotation 999 has image_id 77"):
        load_coco_labels(bad)
