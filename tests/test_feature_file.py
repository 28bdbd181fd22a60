"""``features: {backbone: file, path: ...}``: a user's feature file becomes ``features.h5``."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from snakemake.utils import validate

from pipeline.artifacts import read_h5
from pipeline.data.split_table import SplitTable, write_split
from pipeline.stages import features as stage

ROOT = Path(__file__).resolve().parents[1]
IDS = np.array([11, 5, 42, 7, 30, 2], dtype=np.int64)
NAMES = np.array([f"dir/img{i}.jpg" for i in IDS])


@pytest.fixture
def split(tmp_path: Path) -> Path:
    """A split of six images (ids not sorted); the images need not exist for `file`."""
    table = SplitTable(ids=IDS, paths=NAMES, labels=np.eye(6, 3, dtype=np.uint8),
                       split=np.array([0, 0, 1, 2, 2, 2], np.uint8), class_names=["a", "b", "c"],
                       image_root=str(tmp_path / "images"), protocol="random")
    out = tmp_path / "split.h5"
    write_split(table, out, "mine", 0)
    return out


def feats_of(ids: np.ndarray) -> np.ndarray:
    """Features a row's id can be told from: row of image ``i`` is ``[i, 2i, 3i, 0.5]``."""
    ids = np.asarray(ids, np.float32)
    return np.stack([ids, 2 * ids, 3 * ids, np.full_like(ids, 0.5)], axis=1)


def write_user_h5(path: Path, **data: np.ndarray) -> Path:
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            f.create_dataset(k, data=v.astype(object) if v.dtype.kind == "U" else v,
                             dtype=h5py.string_dtype() if v.dtype.kind == "U" else None)
    return path


def run(split: Path, out: Path, source: Path) -> None:
    stage.main(["--split", str(split), "--out", str(out), "--device", "cpu",
                "--backbone-json", json.dumps({"backbone": "file", "path": str(source)})])


def test_round_trip_same_order(split, tmp_path):
    src = write_user_h5(tmp_path / "mine.h5", features=feats_of(IDS), ids=IDS)
    run(split, tmp_path / "features.h5", src)
    data, attrs = read_h5(tmp_path / "features.h5", stage="features")
    assert np.array_equal(data["ids"], IDS)
    assert np.array_equal(data["features"], feats_of(IDS))
    assert data["features"].dtype == np.float32 and data["valid"].tolist() == [1] * 6
    assert attrs["backbone"] == "file" and attrs["matched_by"] == "ids"
    assert attrs["source_file"] == str(src.resolve())
    assert attrs["source_size"] == src.stat().st_size and attrs["source_mtime"]
    assert attrs["dim"] == 4 and attrs["n_rows"] == 6


def test_rows_are_reordered_by_id_and_extra_rows_ignored(split, tmp_path):
    order = np.array([3, 0, 5, 1, 4, 2])
    ids = np.concatenate([IDS[order], [999, 1000]])  # two images the split does not use
    src = write_user_h5(tmp_path / "mine.h5", features=feats_of(ids).astype(np.float64),
                        ids=ids)
    run(split, tmp_path / "features.h5", src)
    data, attrs = read_h5(tmp_path / "features.h5", stage="features")
    assert np.array_equal(data["features"], feats_of(IDS))  # split order, not the file's
    assert attrs["n_source_rows"] == 8


def test_npz_matched_by_relative_or_absolute_path(split, tmp_path):
    order = np.array([5, 4, 3, 2, 1, 0])
    paths = np.array([str(tmp_path / "images" / p) if i % 2 else str(p)
                      for i, p in enumerate(NAMES[order])])
    src = tmp_path / "mine.npz"
    np.savez(src, features=feats_of(IDS[order]), paths=paths)
    run(split, tmp_path / "features.h5", src)
    data, attrs = read_h5(tmp_path / "features.h5", stage="features")
    assert np.array_equal(data["features"], feats_of(IDS))
    assert attrs["matched_by"] == "paths"


def test_missing_images_are_named_with_the_file(split, tmp_path):
    keep = np.array([0, 2, 3, 5])  # ids 5 and 30 left out
    src = write_user_h5(tmp_path / "mine.h5", features=feats_of(IDS[keep]), ids=IDS[keep])
    with pytest.raises(SystemExit) as e:
        run(split, tmp_path / "features.h5", src)
    msg = str(e.value)
    assert str(src) in msg and "2 of the split's 6 images have no row" in msg
    assert "5, 30" in msg
    assert not (tmp_path / "features.h5").exists()


@pytest.mark.parametrize(("features", "fragment"), [
    (np.zeros((6, 4, 1), np.float32), r"must be \(N, D\).*got shape \(6, 4, 1\)"),
    (np.zeros((5, 4), np.float32), r"one row per entry of 'ids' \(6\), got shape \(5, 4\)"),
])
def test_bad_shape_is_refused_naming_the_file(split, tmp_path, features, fragment):
    src = write_user_h5(tmp_path / "mine.h5", features=features, ids=IDS)
    with pytest.raises(SystemExit, match=fragment) as e:
        run(split, tmp_path / "features.h5", src)
    assert str(src) in str(e.value)
    assert not (tmp_path / "features.h5").exists()


def test_non_finite_row_is_refused_naming_the_id(split, tmp_path):
    f = feats_of(IDS)
    f[4, 1] = np.nan
    src = write_user_h5(tmp_path / "mine.h5", features=f, ids=IDS)
    with pytest.raises(SystemExit, match=r"mine.h5: row 4 \(ids 30\).*not finite"):
        run(split, tmp_path / "features.h5", src)


def test_file_without_keys_is_refused(split, tmp_path):
    src = write_user_h5(tmp_path / "mine.h5", features=feats_of(IDS))
    with pytest.raises(SystemExit, match="neither 'ids' nor 'paths'"):
        run(split, tmp_path / "features.h5", src)


def test_schema_needs_path_with_file_and_only_then():
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    schema = str(ROOT / "schemas" / "config.schema.yaml")
    ok = copy.deepcopy(cfg)
    ok["demo"]["features"] = {"backbone": "file", "path": "/data/mine/feats.h5"}
    validate(ok, schema)
    for section in ({"backbone": "file"}, {"backbone": "vgg16_fc7", "path": "x.h5"}):
        bad = copy.deepcopy(cfg)
        bad["demo"]["features"] = section
        with pytest.raises(Exception, match="path"):
            validate(bad, schema)


def test_the_rule_reads_the_users_file_and_asks_no_gpu(tmp_path):
    """Dry run of the paper's COCO features with `backbone: file`: the file is an input."""
    import re
    import subprocess
    import sys

    from tests.conftest import venv_env

    src = write_user_h5(tmp_path / "feats.h5", features=feats_of(IDS), ids=IDS)
    run_ = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-n", "--forceall",
         "results/coco/features.h5", "--config",
         f"coco={{features: {{backbone: file, path: {src}}}}}"],
        capture_output=True, text=True, env=venv_env(), cwd=ROOT)
    assert run_.returncode == 0, run_.stderr[-3000:]
    block = re.search(r"rule features:\n(.*?)\n\n", run_.stdout + "\n\n", re.S).group(1)
    inputs = re.search(r"^\s+input: (.*)$", block, re.M).group(1)
    assert str(src) in inputs and "results/coco/split.h5" in inputs
    assert not re.search(r"\bgpu=[1-9]", block)
