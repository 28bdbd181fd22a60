"""The feature stage: backbones, row alignment with split.h5, unreadable images, the CLI, and
resuming after a crash.

All networks use ``weights: null`` (random init, seeded by ``pipeline.backbones``), 32×32 inputs
and a few generated images, so every test runs in seconds on a CPU; the features are meaningless
and no test looks at their values beyond shape, finiteness and equality between runs.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

import pipeline.backbones as pf
from pipeline.artifacts import check_aligned, partial_path, read_attrs, read_h5
from pipeline.data.split_table import SplitTable, write_split
from pipeline.stages import features as stage

REPO = Path(__file__).resolve().parents[1]
LITE: dict[str, Any] = {"backbone": "efficientnet_lite0", "weights": None, "image_size": 32,
                        "batch_size": 4}
N_IMAGES, CORRUPT = 10, 3  # row 3 is a JPEG of garbage bytes
_REAL_BUILD = pf.build_backbone


def make_split(tmp_path: Path) -> Path:
    """``split.h5`` over 10 images of assorted sizes, modes and formats under ``images/``; the
    file of row :data:`CORRUPT` is garbage bytes named ``.jpg``."""
    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    names = []
    for i in range(N_IMAGES):
        name = f"img{i:02d}.{'png' if i % 4 == 1 else 'jpg'}"
        if i == CORRUPT:
            (root / name).write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
        else:
            h, w = 24 + 8 * (i % 3), 40 - 4 * (i % 2)
            pix = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            im = Image.fromarray(pix).convert("L" if i % 5 == 2 else "RGB")
            im.save(root / name)
        names.append(name)
    labels = (rng.random((N_IMAGES, 3)) < 0.5).astype(np.uint8)
    table = SplitTable(ids=np.arange(100, 100 + N_IMAGES, dtype=np.int64),
                       paths=np.array(names), labels=labels,
                       split=np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2], dtype=np.uint8),
                       class_names=["a", "b", "c"], image_root=str(root), protocol="random")
    out = tmp_path / "split.h5"
    write_split(table, out, "tiny", 0)
    return out


def image_paths(split: Path) -> tuple[list[str], np.ndarray]:
    """Absolute image paths and ids of a split file, as the CLI builds them."""
    data, attrs = read_h5(split, ["ids", "paths"])
    return [str(Path(attrs["image_root"]) / p) for p in data["paths"]], data["ids"]


def cli_args(split: Path, out: Path, cfg: dict[str, Any], *extra: str) -> list[str]:
    return ["--split", str(split), "--out", str(out), "--device", "cpu",
            "--backbone-json", json.dumps(cfg), *extra]


@pytest.fixture
def split(tmp_path: Path) -> Path:
    return make_split(tmp_path)


class _Counting(torch.nn.Module):
    """Wraps a feature net: counts forward calls and raises on call ``die_at`` (1-based)."""

    def __init__(self, net: torch.nn.Module, die_at: int | None) -> None:
        super().__init__()
        self.net, self.die_at, self.calls = net, die_at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.die_at:
            raise RuntimeError("simulated crash")
        return self.net(x)


def patch_backbone(monkeypatch: pytest.MonkeyPatch, die_at: int | None = None) -> list:
    """Make :func:`pipeline.backbones.build_backbone` return counting nets; returns them."""
    made: list[_Counting] = []
    real = _REAL_BUILD

    def build(cfg: dict[str, Any]) -> tuple[torch.nn.Module, dict[str, Any]]:
        net, info = real(cfg)
        made.append(_Counting(net, die_at))
        return made[-1], info

    monkeypatch.setattr(pf, "build_backbone", build)
    return made


def assert_same_file(a: Path, b: Path) -> None:
    """Same datasets (features to 1e-6, ids/valid identical) and attrs up to ``created``."""
    da, aa = read_h5(a)
    db, ab = read_h5(b)
    assert sorted(da) == sorted(db) == ["features", "ids", "valid"]
    np.testing.assert_array_equal(da["ids"], db["ids"])
    np.testing.assert_array_equal(da["valid"], db["valid"])
    np.testing.assert_allclose(da["features"], db["features"], rtol=1e-6, atol=1e-6)
    for attrs in (aa, ab):
        attrs.pop("created")
    assert aa == ab


def test_lite0_rows_align_with_split_and_corrupt_row_is_invalid(split, tmp_path, caplog):
    out = tmp_path / "features.h5"
    with caplog.at_level(logging.WARNING, logger="pipeline.features"):
        assert stage.main(cli_args(split, out, LITE)) == 0
    data, attrs = read_h5(out, stage="features")
    sdata, _ = read_h5(split, ["ids"])
    check_aligned(sdata["ids"], data["ids"], "split.h5", "features.h5")
    assert data["features"].shape == (N_IMAGES, 1280) and data["features"].dtype == np.float32
    assert data["valid"].dtype == np.uint8
    np.testing.assert_array_equal(data["valid"], np.arange(N_IMAGES) != CORRUPT)
    assert not data["features"][CORRUPT].any()
    good = np.delete(data["features"], CORRUPT, axis=0)
    assert np.isfinite(good).all() and (np.abs(good).sum(1) > 0).all()
    assert attrs["n_invalid"] == 1 and attrs["backbone"] == "efficientnet_lite0"
    assert attrs["normalisation"] == "(x - 127) / 128 on 0-255 pixels"
    assert "random init" in attrs["weights"] and attrs["precision"] == "fp32"
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("unreadable image" in m and f"img{CORRUPT:02d}.jpg" in m for m in warned)
    assert any("1 of 10 images were unreadable" in m for m in warned)
    assert not partial_path(out).exists()
    with h5py.File(out) as f:
        assert f["features"].dims[0].label == "image" and f["features"].compression == "gzip"


@pytest.mark.parametrize(("backbone", "dim"), [("vgg16_fc7", 4096), ("torchvision:resnet18", 512)])
def test_torchvision_backbones_give_their_dimension(split, tmp_path, backbone, dim):
    paths, ids = image_paths(split)
    cfg = {"backbone": backbone, "weights": None, "image_size": 32, "batch_size": 4}
    out = tmp_path / "f.h5"
    assert pf.extract(paths[:3], ids[:3], cfg, out) == 0
    data, attrs = read_h5(out)
    assert data["features"].shape == (3, dim) and data["features"].dtype == np.float32
    assert np.isfinite(data["features"]).all()
    assert attrs["normalisation"] == "ImageNet mean/std on [0,1] pixels"


def test_random_init_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, _ = pf.build_backbone({"backbone": "torchvision:resnet18", "weights": None})
    after = torch.rand(1)
    b, _ = pf.build_backbone({"backbone": "torchvision:resnet18", "weights": None})
    assert torch.equal(before, after)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_unknown_backbone_names_the_config_key():
    with pytest.raises(ValueError, match=r"features\.backbone 'alexnet_fc7' unknown"):
        pf.build_backbone({"backbone": "alexnet_fc7", "weights": None})


def test_too_small_image_size_names_the_config_key(split, tmp_path):
    paths, ids = image_paths(split)
    with pytest.raises(ValueError, match=r"features\.image_size 16 is too small.*at least 32"):
        pf.extract(paths, ids, {**LITE, "image_size": 16}, tmp_path / "f.h5")


def test_missing_image_file_exits_naming_it(split, tmp_path):
    (tmp_path / "images" / "img06.jpg").unlink()
    with pytest.raises(SystemExit,
                       match=r"1 image files .* missing.*img06\.jpg.*split\.missing_images: drop"):
        stage.main(cli_args(split, tmp_path / "f.h5", LITE))
    assert not (tmp_path / "f.h5").exists()


def test_cpu_ignores_half_precision(split, tmp_path):
    paths, ids = image_paths(split)
    pf.extract(paths[:2], ids[:2], {**LITE, "precision": "bf16"}, tmp_path / "f.h5")
    assert read_h5(tmp_path / "f.h5")[1]["precision"] == "fp32"


def test_worker_processes_give_the_same_rows(split, tmp_path):
    paths, ids = image_paths(split)
    pf.extract(paths, ids, LITE, tmp_path / "a.h5")
    pf.extract(paths, ids, {**LITE, "num_workers": 2}, tmp_path / "b.h5")
    assert_same_file(tmp_path / "a.h5", tmp_path / "b.h5")


def test_cli_subprocess_end_to_end(split, tmp_path):
    out = tmp_path / "features.h5"
    cfg = {**LITE, "image_size": 40}
    proc = subprocess.run([sys.executable, "-m", "pipeline.stages.features",
                           *cli_args(split, out, cfg, "--threads", "1")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "unreadable image" in proc.stderr
    data, attrs = read_h5(out, stage="features")
    assert data["features"].shape == (N_IMAGES, 1280)
    assert attrs["backbone"] == "efficientnet_lite0" and attrs["image_size"] == 40
    assert attrs["normalisation"] == "(x - 127) / 128 on 0-255 pixels"
    assert attrs["dataset"] == "tiny" and attrs["split_file"] == str(split)


def test_resume_after_crash_equals_uninterrupted_run(split, tmp_path, monkeypatch, caplog):
    paths, ids = image_paths(split)
    ref = tmp_path / "ref" / "features.h5"
    pf.extract(paths, ids, LITE, ref, commit_rows=4)

    out = tmp_path / "run" / "features.h5"
    nets = patch_backbone(monkeypatch, die_at=3)  # dies in the 3rd of 3 batches
    with pytest.raises(RuntimeError, match="simulated crash"):
        pf.extract(paths, ids, LITE, out, commit_rows=4)
    assert not out.exists()
    with h5py.File(partial_path(out)) as f:
        assert f.attrs["rows-complete"] == 8
        assert f["valid"][:8].tolist() == [1, 1, 1, 0, 1, 1, 1, 1]

    nets = patch_backbone(monkeypatch)
    with caplog.at_level(logging.INFO, logger="pipeline.features"):
        assert pf.extract(paths, ids, LITE, out, commit_rows=4) == 1  # counts the earlier row
    assert nets[0].calls == 1  # only the last batch was computed again
    assert "resuming from partial file" in caplog.text and "8 of 10 rows" in caplog.text
    assert not partial_path(out).exists()
    assert_same_file(ref, out)


def test_resume_mid_batch_recomputes_from_batch_boundary(split, tmp_path, monkeypatch):
    paths, ids = image_paths(split)
    ref = tmp_path / "ref.h5"
    pf.extract(paths, ids, LITE, ref)
    out = tmp_path / "out.h5"
    patch_backbone(monkeypatch, die_at=3)
    with pytest.raises(RuntimeError):
        pf.extract(paths, ids, LITE, out, commit_rows=3)  # commits at rows 3 and 6
    nets = patch_backbone(monkeypatch)
    pf.extract(paths, ids, LITE, out, commit_rows=3)
    assert nets[0].calls == 2  # rows 4..9: from the batch boundary at row 4
    assert_same_file(ref, out)


def test_changed_config_discards_partial_file(split, tmp_path, monkeypatch, caplog):
    paths, ids = image_paths(split)
    out = tmp_path / "features.h5"
    patch_backbone(monkeypatch, die_at=2)
    with pytest.raises(RuntimeError):
        pf.extract(paths, ids, LITE, out, commit_rows=4)
    assert partial_path(out).exists()
    nets = patch_backbone(monkeypatch)
    other = {**LITE, "image_size": 40}
    with caplog.at_level(logging.WARNING, logger="pipeline.features"):
        pf.extract(paths, ids, other, out, commit_rows=4)
    assert "discarded partial file" in caplog.text and "key.image_size" in caplog.text
    assert nets[0].calls == 3  # started over
    ref = tmp_path / "ref.h5"
    pf.extract(paths, ids, other, ref)
    assert_same_file(ref, out)


def test_other_ids_discard_partial_file(split, tmp_path, monkeypatch, caplog):
    paths, ids = image_paths(split)
    out = tmp_path / "features.h5"
    patch_backbone(monkeypatch, die_at=2)
    with pytest.raises(RuntimeError):
        pf.extract(paths, ids, LITE, out, commit_rows=4)
    patch_backbone(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="pipeline.features"):
        pf.extract(paths, ids + 1, LITE, out, commit_rows=4)
    assert "ids_sha256" in caplog.text
    np.testing.assert_array_equal(read_h5(out)[0]["ids"], ids + 1)


def test_unreadable_partial_file_is_discarded(split, tmp_path, caplog):
    paths, ids = image_paths(split)
    out = tmp_path / "features.h5"
    partial_path(out).write_bytes(b"not an hdf5 file")
    with caplog.at_level(logging.WARNING, logger="pipeline.features"):
        pf.extract(paths, ids, LITE, out)
    assert "discarded unreadable partial file" in caplog.text
    assert read_h5(out)[0]["features"].shape == (N_IMAGES, 1280)


CHILD = textwrap.dedent("""
    import os, signal, sys
    import pipeline.backbones as pf
    from pipeline.stages import features as stage

    real, calls = pf.build_backbone, [0]

    def build(cfg):
        net, info = real(cfg)

        def hook(module, args):
            calls[0] += 1
            if calls[0] == 3:
                os.kill(os.getpid(), getattr(signal, sys.argv[1]))

        net.register_forward_pre_hook(hook)
        return net, info

    pf.build_backbone = build
    sys.exit(stage.main(sys.argv[2:]))
""")


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_resume_after_process_is_killed(split, tmp_path, sig, caplog):
    out = tmp_path / "features.h5"
    args = cli_args(split, out, {**LITE, "batch_size": 3}, "--commit-rows", "3")
    proc = subprocess.run([sys.executable, "-c", CHILD, sig, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode in (-getattr(signal, sig), 128 + getattr(signal, sig)), proc.stderr
    assert not out.exists()
    with h5py.File(partial_path(out)) as f:
        assert f.attrs["rows-complete"] == 6
    with caplog.at_level(logging.INFO, logger="pipeline.features"):
        assert stage.main(args) == 0
    assert "6 of 10 rows already complete" in caplog.text
    paths, ids = image_paths(split)
    ref = tmp_path / "ref.h5"
    pf.extract(paths, ids, {**LITE, "batch_size": 3}, ref)
    with h5py.File(ref, "a") as f:  # the CLI adds provenance of the split file
        f.attrs["split_file"], f.attrs["dataset"] = str(split), "tiny"
        f.attrs["protocol"] = "random"
    assert_same_file(ref, out)


def test_default_vgg16_preprocessing_equals_the_weights_transforms(tmp_path):
    """features.preprocess defaults to the weights' own transforms: resize 256, centre crop 224
    (not a stretch to 224x224); the pixels reaching VGG16 equal torchvision's on a 300x200
    image (transforms() needs no weights download)."""
    from torchvision.models import VGG16_Weights

    path = tmp_path / "wide.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(path)
    prep = pf.preprocessing({"backbone": "vgg16_fc7"})
    assert (prep["preprocess"], prep["resize_size"], prep["crop_size"]) == ("weights", 256, 224)
    x = pf.load_image(str(path), prep["crop_size"], prep["resize_size"])
    mean = torch.tensor(pf.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(pf.IMAGENET_STD).view(1, 3, 1, 1)
    ours = pf.normalise(x[None], mean, std)[0]
    with Image.open(path) as im:
        theirs = VGG16_Weights.IMAGENET1K_V1.transforms()(im.convert("RGB"))
    assert ours.shape == theirs.shape == (3, 224, 224)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    stretched = pf.load_image(str(path), 224)
    assert not torch.equal(stretched, x)  # the former stretch differs on a non-square image
    assert pf.preprocessing({"backbone": "vgg16_fc7", "preprocess": "stretch",
                             "image_size": 100})["crop_size"] == 100


def test_features_attrs_record_the_preprocessing(split, tmp_path):
    """attrs say which preprocessing made the rows; the net sees 224x224 crops (weights) or
    image_size squares (stretch)."""
    paths, ids = image_paths(split)
    seen: list[tuple[int, ...]] = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(tuple(x.shape[1:]))
            return x.mean((2, 3))

    info = {"layer": "probe", "dim": 3, "mean": pf.IMAGENET_MEAN, "std": pf.IMAGENET_STD,
            "normalisation": "ImageNet mean/std on [0,1] pixels", "weights": "probe"}
    for mode, shape, resize in (("weights", (3, 224, 224), 256), ("stretch", (3, 40, 40), "none")):
        cfg = {"backbone": "vgg16_fc7", "weights": "DEFAULT", "image_size": 40,
               "batch_size": 4, "preprocess": mode}
        out = tmp_path / f"{mode}.h5"
        seen.clear()
        pf.extract(paths[:3], ids[:3], cfg, out, model=(Probe(), info))
        attrs = read_attrs(out)
        assert attrs["preprocess"] == mode and attrs["resize_size"] == resize
        assert attrs["crop_size"] == shape[1] and set(seen) == {shape}
        assert ("transforms()" in attrs["preprocessing"]) == (mode == "weights")
        seen.clear()  # a new image is read as the stage reads it (search --image)
        feats, ok, finfo = pf.features_of(paths[:3], cfg, model=(Probe(), info))
        assert set(seen) == {shape} and finfo["preprocess"] == mode
        np.testing.assert_array_equal(feats, read_h5(out)[0]["features"])
