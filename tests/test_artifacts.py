"""The HDF5 conventions: attrs, chunking, atomic writes, alignment checks, inspect."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest

from pipeline.artifacts import (
    ENCODING_TYPE,
    RowWriter,
    check_aligned,
    describe,
    read_attrs,
    read_h5,
    row_chunks,
    write_h5,
)


def test_write_read_round_trip_with_provenance(tmp_path):
    path = tmp_path / "a.h5"
    feats = np.arange(12, dtype=np.float32).reshape(4, 3)
    write_h5(path, {"ids": np.array([7, 8, 9, 10]), "features": feats,
                    "paths": np.array(["a.jpg", "b.jpg", "c.jpg", "d.jpg"])},
             stage="features", attrs={"backbone": "x", "mean": [0.5, 0.5], "sigma": None})
    data, attrs = read_h5(path)
    np.testing.assert_array_equal(data["features"], feats)
    assert list(data["paths"]) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert attrs["encoding-type"] == ENCODING_TYPE
    assert attrs["stage"] == "features" and attrs["n_rows"] == 4
    assert attrs["mean"] == [0.5, 0.5] and attrs["backbone"] == "x"
    assert "created" in attrs and "package_version" in attrs
    with h5py.File(path) as f:
        assert f["features"].dims[0].label == "image"
        assert f["features"].dims[1].label == "feature"
        assert f["features"].compression == "gzip"


def test_row_chunks_about_one_mib():
    assert row_chunks((100_000, 4096), 4) == (64, 4096)
    assert row_chunks((10, 4096), 4) == (10, 4096)
    assert row_chunks((0, 3), 4) is None


def test_misaligned_rows_rejected_and_nothing_written(tmp_path):
    path = tmp_path / "bad.h5"
    with pytest.raises(ValueError, match="'features' has 3 rows but 'ids' has 4"):
        write_h5(path, {"ids": np.arange(4), "features": np.zeros((3, 2))}, stage="x")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_row_writer_leaves_nothing_on_crash(tmp_path):
    path = tmp_path / "f.h5"
    with pytest.raises(RuntimeError):
        with RowWriter(path, n_rows=4, stage="features", ids=np.arange(4),
                       columns={"features": ((2,), np.float32)}) as w:
            w.write(0, {"features": np.ones((2, 2), np.float32)})
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with RowWriter(path, n_rows=4, stage="features", ids=np.arange(4),
                   columns={"features": ((2,), np.float32)}) as w:
        w.write(0, {"features": np.ones((4, 2), np.float32)})
    assert read_h5(path)[0]["features"].sum() == 8


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.h5.*snakemake"):
        read_h5(tmp_path / "missing.h5")
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = [1]
    with pytest.raises(ValueError, match="plain.h5: not a lagnh-pipeline artifact"):
        read_h5(plain)
    good = tmp_path / "g.h5"
    write_h5(good, {"ids": np.arange(2)}, stage="split")
    with pytest.raises(ValueError, match="expected an artifact of stage 'features'"):
        read_h5(good, stage="features")
    with pytest.raises(KeyError, match="no dataset 'codes'"):
        read_h5(good, ["codes"])
    assert read_attrs(good)["stage"] == "split"


def test_check_aligned_names_both_files():
    check_aligned(np.arange(3), np.arange(3), "a", "b")
    with pytest.raises(ValueError, match="a has 3 rows, b has 2"):
        check_aligned(np.arange(3), np.arange(2), "a", "b")
    with pytest.raises(ValueError, match="differ in ids from row 1"):
        check_aligned(np.array([1, 2, 3]), np.array([1, 5, 3]), "a", "b")


def test_inspect_cli(tmp_path):
    path = tmp_path / "c.h5"
    write_h5(path, {"ids": np.arange(3), "aux_labels": np.eye(3, dtype=np.uint8)},
             stage="auxiliary", attrs={"threshold": 0.5})
    text = describe(path)
    assert "aux_labels: shape=(3, 3) dtype=uint8 dims=(image,class)" in text
    assert "threshold: 0.5" in text and "row sums" in text
    out = subprocess.run([sys.executable, "-m", "pipeline", "inspect", str(path)],
                         capture_output=True, text=True, check=True).stdout
    assert "stage: auxiliary" in out
    bad = subprocess.run([sys.executable, "-m", "pipeline", "inspect", str(tmp_path / "no.h5")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "no.h5" in bad.stderr
