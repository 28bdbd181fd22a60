"""Train and encode read only the feature rows they need, by row blocks, checking finiteness
block by block (issue #15 item 7: at COCO scale the whole 1.9 GiB matrix used to be read)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import pipeline.stage_inputs as si
from pipeline.artifacts import read_h5, write_h5
from pipeline.codes import unpack_codes
from pipeline.lagnh import method as lagnh
from pipeline.stages.encode import main as encode_main
from pipeline.stages.train import main as train_main

N, D, C = 40, 8, 3
SPLIT = np.array([0] * 10 + [1] * 6 + [2] * 24, np.uint8)  # 10 train, 6 query, 24 retrieval


def _write(tmp_path: Path, feats: np.ndarray) -> list[str]:
    rng = np.random.default_rng(0)
    ids = np.arange(N, dtype=np.int64) + 100
    labels = (rng.random((N, C)) < 0.5).astype(np.uint8)
    write_h5(tmp_path / "split.h5", {"ids": ids, "paths": np.array([f"{i}.jpg" for i in ids]),
                                     "labels": labels, "split": SPLIT}, stage="split",
             attrs={"dataset": "t", "image_root": str(tmp_path), "class_names": ["a", "b", "c"],
                    "protocol": "random"})
    write_h5(tmp_path / "features.h5", {"ids": ids, "features": feats,
                                        "valid": np.ones(N, np.uint8)}, stage="features")
    write_h5(tmp_path / "aux.h5", {"ids": ids, "aux_labels": labels}, stage="auxiliary")
    return ["--split", str(tmp_path / "split.h5"), "--features", str(tmp_path / "features.h5"),
            "--aux", str(tmp_path / "aux.h5")]


def _feats(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(N, D)).astype(np.float32)


def test_train_never_reads_query_or_retrieval_rows(tmp_path):
    feats = _feats()
    feats[SPLIT != 0] = np.nan  # would be refused if read
    inputs = _write(tmp_path, feats)
    model = tmp_path / "itq.pt"
    assert train_main(["--method", "pcah", "--bits", "4", *inputs, "--out", str(model),
                       "--history", str(tmp_path / "h.csv")]) == 0
    state = torch.load(model, weights_only=False)["state"]
    assert np.allclose(state["mean"], feats[SPLIT == 0].mean(0), atol=1e-6)


def test_encode_never_reads_training_rows(tmp_path):
    feats = _feats()
    inputs = _write(tmp_path, feats)
    model = tmp_path / "pcah.pt"
    train_main(["--method", "pcah", "--bits", "4", *inputs, "--out", str(model),
                "--history", str(tmp_path / "h.csv")])
    assert encode_main(["--model", str(model), *inputs, "--out", str(tmp_path / "a.h5")]) == 0
    feats[SPLIT == 0] = np.nan  # the same file but training rows unreadable
    inputs = _write(tmp_path, feats)
    assert encode_main(["--model", str(model), *inputs, "--out", str(tmp_path / "b.h5")]) == 0
    a = read_h5(tmp_path / "a.h5", ["codes"])[0]["codes"]
    assert np.array_equal(a, read_h5(tmp_path / "b.h5", ["codes"])[0]["codes"])


def test_a_nan_row_that_is_read_is_refused_naming_file_row_and_id(tmp_path):
    feats = _feats()
    feats[23, 5] = np.nan  # a retrieval row
    inputs = _write(tmp_path, feats)
    model = tmp_path / "pcah.pt"
    train_main(["--method", "pcah", "--bits", "4", *inputs, "--out", str(model),
                "--history", str(tmp_path / "h.csv")])
    with pytest.raises(ValueError, match=r"features\.h5: features of row 23 \(id 123\) are "
                                         r"not finite"):
        encode_main(["--model", str(model), *inputs, "--out", str(tmp_path / "c.h5")])
    assert not (tmp_path / "c.h5").exists()


def _chunked(tmp_path: Path, feats: np.ndarray, chunk: int = 4) -> Path:
    path = tmp_path / "chunked.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=feats, chunks=(chunk, feats.shape[1]))
        f.create_dataset("ids", data=np.arange(len(feats)) + 100)
    return path


def test_rows_are_read_by_bounded_slices(tmp_path, monkeypatch):
    feats = _feats()
    feats[[0, 1, 39]] = np.nan  # outside the wanted rows: never checked
    path = _chunked(tmp_path, feats)
    rows = np.array([2, 3, 9, 17, 18, 30, 31, 38])
    slices = []
    real = h5py.Dataset.__getitem__

    def spy(self, key):
        if self.name == "/features":
            slices.append(key)
        return real(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    got = si.read_feature_rows(str(path), rows, block_bytes=8 * 4 * D)  # 8 rows a slice
    assert np.array_equal(got, feats[rows])
    spans = [(s.start, s.stop) for s in slices]
    assert all(b - a <= 8 for a, b in spans) and len(spans) == 5  # 0-8 … 32-40
    assert spans[0] == (0, 8) and spans[-1] == (32, 40)


def test_finiteness_is_checked_only_where_valid(tmp_path):
    feats = _feats()
    feats[5] = np.inf
    path = _chunked(tmp_path, feats)
    valid = np.ones(N, bool)
    with pytest.raises(ValueError, match=r"chunked\.h5: features of row 5 \(id 105\)"):
        si.read_feature_rows(str(path), np.arange(N), valid=valid, block_bytes=4 * 4 * D)
    valid[5] = False
    assert si.read_feature_rows(str(path), np.arange(N), valid=valid).shape == (N, D)


def test_training_rows_cost_a_block_not_the_matrix(tmp_path, monkeypatch):
    """Python-side peak while loading 5% of a 4 MiB matrix (1 MiB chunks) stays under half of
    it (numpy reports its buffers to tracemalloc)."""
    n, d = 4096, 256
    rng = np.random.default_rng(0)
    split = np.where(rng.random(n) < 0.05, 0, 2).astype(np.uint8)
    ids = np.arange(n, dtype=np.int64)
    write_h5(tmp_path / "split.h5", {"ids": ids, "split": split}, stage="split")
    write_h5(tmp_path / "features.h5", {"ids": ids, "valid": np.ones(n, np.uint8),
                                        "features": rng.random((n, d), dtype=np.float32)},
             stage="features")
    write_h5(tmp_path / "aux.h5", {"ids": ids, "aux_labels": np.zeros((n, 2), np.uint8)},
             stage="auxiliary")
    monkeypatch.setattr(si, "BLOCK_BYTES", 256 << 10)
    tracemalloc.start()
    inp = si.load_inputs(str(tmp_path / "split.h5"), str(tmp_path / "features.h5"),
                         str(tmp_path / "aux.h5"), features=False)
    X = si.selected_features(inp, split == 0, block_bytes=si.BLOCK_BYTES)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert X.shape == ((split == 0).sum(), d)
    assert peak < n * d * 4 / 2, peak


class _GroupMean:
    """A method whose code depends on batch-mates: each group of 4 rows against its mean."""

    @staticmethod
    def encode_group(state, params):
        return 4

    @staticmethod
    def encode(state, X, Y, params):
        out = np.zeros(X.shape, bool)
        for s in range(0, len(X), 4):
            out[s:s + 4] = X[s:s + 4] > X[s:s + 4].mean(0)
        return out


def test_encode_blocks_are_whole_groups(tmp_path):
    feats = _feats()
    path = _chunked(tmp_path, feats, chunk=2)
    idx = np.flatnonzero(SPLIT != 0)
    aux = np.zeros((N, C), np.uint8)
    want = _GroupMean.encode({}, feats[idx], None, {})
    got = si.encode_rows(_GroupMean, {}, {}, str(path), idx, aux, np.ones(N, bool),
                         block_bytes=7 * 4 * D)  # 7 rows asked: 4, a whole group
    assert np.array_equal(got, want)


def test_lagnh_batch_codes_by_blocks_equal_one_call(tmp_path):
    rng = np.random.default_rng(1)
    y = (rng.random((N, C)) < 0.4).astype(np.uint8)
    x = (y @ rng.normal(size=(C, D)) + 0.5 * rng.normal(size=(N, D))).astype(np.float32)
    params = {"d_att": 4, "hidden": 8, "epochs": 1, "batch_size": 8, "encode_batch_size": 4,
              "encode_mode": "batch"}
    state = lagnh.fit(x[:10], y[:10], 8, params, seed=0)
    path = _chunked(tmp_path, x, chunk=2)
    idx = np.flatnonzero(SPLIT != 0)
    want = lagnh.encode(state, x[idx], y[idx], params)
    got = si.encode_rows(lagnh, state, params, str(path), idx, y, np.ones(N, bool),
                         block_bytes=6 * 4 * D)  # 6 rows asked: 4, a whole batch
    assert np.array_equal(got, want)
    assert unpack_codes(np.packbits(got, axis=1), 8).shape == (len(idx), 8)


PROBE = """
import sys
import pipeline.baselines.pcah as m
from pipeline.stages.train import main
fit = m.fit
def spy(*args, **kw):
    print("torch during fit:", "torch" in sys.modules)
    return fit(*args, **kw)
m.fit = spy
main(sys.argv[1:])
print("torch after:", "torch" in sys.modules)
"""


def test_a_numpy_method_trains_before_torch_is_imported(tmp_path):
    """torch's import alone is 0.6 GiB resident: a numpy method's fit must not carry it."""
    import os
    import subprocess
    import sys

    inputs = _write(tmp_path, _feats())
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", PROBE, "--method", "pcah", "--bits", "4",
                          *inputs, "--threads", "1", "--out", str(tmp_path / "m.pt"),
                          "--history", str(tmp_path / "h.csv")], capture_output=True,
                         text=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr
    assert "torch during fit: False" in out.stdout and "torch after: True" in out.stdout
