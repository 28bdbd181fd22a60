"""Manifests of images and split inputs: a changed input reruns exactly the stages that read it.

Library tests (content, rewrite only on change) and Snakemake dry runs on a tiny COCO-format
collection and a list-file dataset over the same images: the split ran for real, the later
stages' outputs are stand-ins made newer than their inputs, so a dry run shows what a change
reruns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.data import inventory as manifest
from tests.conftest import job_counts, venv_env

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ library

def test_image_manifest_lists_size_and_mtime_and_skips_hidden(tmp_path: Path) -> None:
    (tmp_path / "a" / "sub").mkdir(parents=True)
    (tmp_path / "a" / "x.jpg").write_bytes(b"123")
    (tmp_path / "a" / "sub" / "y.jpg").write_bytes(b"12345")
    (tmp_path / "a" / ".partial").write_bytes(b"zz")
    os.utime(tmp_path / "a" / "x.jpg", ns=(10**18, 10**18))
    rows = manifest.scan_images([str(tmp_path / "a")])
    a = str(tmp_path / "a")
    assert [(p, s) for p, s, _ in rows] == [(f"{a}/sub/y.jpg", 5), (f"{a}/x.jpg", 3)]
    assert rows[1][2] == 10**18
    hashed = manifest.scan_images([str(tmp_path / "a")], "sha256")
    assert {v for _, _, v in hashed} == {manifest.sha256_file(tmp_path / "a" / "x.jpg"),
                                         manifest.sha256_file(tmp_path / "a" / "sub" / "y.jpg")}
    text = manifest.render(rows, "stat", ["p1"])
    assert text.startswith(manifest.HEADER) and text.endswith("image\tp1\n")
    with pytest.raises(ValueError, match="source.manifest"):
        manifest.scan_images([], "md5")


def test_refresh_rewrites_only_changed_content(tmp_path: Path) -> None:
    path = tmp_path / "m" / "images.tsv"
    assert manifest.refresh(path, "a\n") is True
    os.utime(path, ns=(10**18, 10**18))
    assert manifest.refresh(path, "a\n") is False
    assert path.stat().st_mtime_ns == 10**18  # unchanged content: mtime kept
    assert manifest.refresh(path, "b\n") is True
    assert path.read_text() == "b\n" and path.stat().st_mtime_ns != 10**18
    assert [p.name for p in path.parent.iterdir()] == ["images.tsv"]  # no temp file left


def test_sha256_mode_ignores_a_touch(tmp_path: Path) -> None:
    (tmp_path / "x.jpg").write_bytes(b"abc")
    spec = {"image_folders": [str(tmp_path)], "image_lists": [], "split_files": [],
            "mode": "sha256"}
    out, inputs = tmp_path.parent / "i.tsv", tmp_path.parent / "s.tsv"
    assert manifest.write_manifests(spec, out, inputs) == (True, True)
    os.utime(tmp_path / "x.jpg", ns=(10**18, 10**18))
    assert manifest.write_manifests(spec, out, inputs) == (False, False)
    assert manifest.write_manifests({**spec, "mode": "stat"}, out, inputs) == (True, True)


# ------------------------------------------------------------------------- workflow dry runs

N = 8
LATER = ("features", "detect", "auxiliary")  # the stand-in outputs' rules, in DAG order


def make_collection(work: Path) -> None:
    from PIL import Image

    images = work / "data" / "images"
    images.mkdir(parents=True)
    entries, anns, lines = [], [], []
    for i in range(N):
        name = f"img{i}.jpg"
        Image.new("RGB", (16, 16), (30 * i, 0, 0)).save(images / name)
        entries.append({"id": i + 1, "file_name": name, "width": 16, "height": 16})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1 + i % 2,
                     "bbox": [0, 0, 4, 4], "area": 16, "iscrowd": 0})
        lines.append(f"{name} {i % 2} {1 - i % 2}\n")
    (work / "data" / "instances.json").write_text(json.dumps({
        "images": entries, "annotations": anns,
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}))
    for key, part in (("train", lines[:4]), ("query", lines[4:6]), ("db", lines[6:])):
        (work / "data" / f"{key}.txt").write_text("".join(part))


def config(work: Path) -> Path:
    common = {"features": {"backbone": "efficientnet_lite0"}, "detector": {"kind": "faster_rcnn"},
              "methods": {"itq": {}}, "device": "cpu"}
    cfg = {
        "mine": {"source": {"kind": "coco_format", "instances": "data/instances.json",
                            "images": "data/images"},
                 "split": {"protocol": "random", "train": 4, "query": 2}, **common},
        "lst": {"source": {"kind": "coco_format", "images": "data/images"},
                "split": {"protocol": "lists", "train_list": "data/train.txt",
                          "query_list": "data/query.txt", "database_list": "data/db.txt"},
                **common},
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
           str(work), "--configfile", str(work / "config.yaml"), *args]
    env = {**venv_env(), "PYTHONPATH": str(ROOT)}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


TARGETS = [f"results/{d}/{f}" for d in ("mine", "lst")
           for f in ("features.h5", "detections.h5", "aux.h5")]


def planned(work: Path) -> dict[str, int]:
    run = snakemake(work, "-n", *TARGETS)
    return job_counts(run.stdout + run.stderr)


def stand_ins(work: Path) -> None:
    """Outputs of the later stages, each newer than what it reads."""
    for d in ("mine", "lst"):
        for name in ("features.h5", "detections.h5", "aux.h5"):
            time.sleep(0.01)
            (work / "results" / d / name).write_text("stand-in\n")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """Splits and manifests made for real, the later stages' outputs stood in for."""
    work = tmp_path_factory.mktemp("manifest_run")
    make_collection(work)
    config(work)
    snakemake(work, "--cores", "1", "results/mine/split.h5", "results/lst/split.h5")
    stand_ins(work)
    return work


@pytest.fixture
def work(built: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "w"
    shutil.copytree(built, copy, symlinks=True)
    return copy


def test_nothing_changed_nothing_reruns(work: Path) -> None:
    assert planned(work) == {}
    assert planned(work) == {}  # the refresh did not touch the manifests either
    text = (work / "results" / "mine" / "manifest" / "images.tsv").read_text()
    assert text.count("\n") == N + 1 and "data/images/img3.jpg\t" in text


@pytest.mark.parametrize("change", ["replace", "truncate"])
def test_changed_image_reruns_features_and_detect_not_split(work: Path, change: str) -> None:
    img = work / "data" / "images" / "img3.jpg"
    if change == "replace":  # same size, new content and mtime
        from PIL import Image

        tmp = img.with_name("new.tmp")
        Image.new("RGB", (16, 16), (0, 200, 0)).save(tmp, format="JPEG")
        os.replace(tmp, img)
    else:
        with open(img, "r+b") as f:
            f.truncate(10)
    jobs = planned(work)
    assert jobs == {"features": 2, "detect": 2, "auxiliary": 2}, jobs


def test_deleted_image_reruns_split_and_all_later_stages(work: Path) -> None:
    (work / "data" / "images" / "img5.jpg").unlink()
    jobs = planned(work)
    assert jobs == {"split": 2, "features": 2, "detect": 2, "auxiliary": 2}, jobs


def test_edited_list_file_reruns_only_that_datasets_split(work: Path) -> None:
    path = work / "data" / "query.txt"
    path.write_text(path.read_text().replace("img4.jpg", "img7.jpg"))
    jobs = planned(work)
    assert jobs == {"split": 1, "features": 1, "detect": 1, "auxiliary": 1}, jobs


def test_edited_instances_file_reruns_its_split(work: Path) -> None:
    path = work / "data" / "instances.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["category_id"] = 2
    path.write_text(json.dumps(data))
    os.utime(path, ns=(10**9, 10**9))  # even with an old mtime: the manifest sees its size
    jobs = planned(work)
    assert jobs.get("split") == 1 and jobs.get("features") == 1, jobs
