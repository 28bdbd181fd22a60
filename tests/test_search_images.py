"""Searching with new image files, and indexes that grow a database without retraining.

One tiny demo-like chain (41 mosaics of fake Fashion-MNIST items, random-weight EfficientNet
features, a small cell classifier, LAGNH at 16 bits) is built by running the stages' own
``main`` functions, as the rules do; then new-image hashing (``python -m pipeline search
--image``) and the index stages must reproduce the ``encode`` stage's codes bit for bit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from pipeline.__main__ import main as cli
from pipeline.artifacts import read_h5
from pipeline.backbones import features_of
from pipeline.codes import pack_codes
from pipeline.data.demo import build_demo, new_mosaic
from pipeline.data.index_collection import index_table
from pipeline.data.split_table import QUERY, RETRIEVAL, TRAIN
from pipeline.retrieval.new_images import (
    DatasetFiles,
    aux_from_tags,
    hash_images,
    load_config,
    load_encoder,
)
from tests.conftest import venv_env, write_fake_fmnist

ROOT = Path(__file__).resolve().parents[1]
#: 41 images in batches of 8: the features stage's last batch holds one image
N_IMAGES, BATCH = 41, 8
LAGNH = {"epochs": 3, "batch_size": 16, "hidden": 32, "d_att": 16, "device": "cpu"}


def _config(work: Path, fmnist: Path) -> dict:
    return {"demo": {
        "source": {"kind": "demo", "images": str(work / "resources/demo/images"),
                   "instances": str(work / "resources/demo/instances_all.json"),
                   "build": {"n_images": N_IMAGES, "cell": 32, "seed": 1,
                             "fashion_mnist_dir": str(fmnist)}},
        "split": {"protocol": "random", "train": 20, "query": 6},
        "features": {"backbone": "efficientnet_lite0", "weights": None, "image_size": 32,
                     "batch_size": BATCH},
        "detector": {"kind": "cell_classifier",
                     "train": {"epochs": 60, "lr": 0.01, "hidden": [64], "n_empty": 100}},
        "bits": [16], "methods": {"lagnh": {}}, "lagnh": LAGNH, "device": "cpu"}}


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict:
    """The demo chain up to ``codes/lagnh_16.h5``, each step by its stage's ``main``."""
    from pipeline.stages import auxiliary, cell_classifier, detect, encode, features, split, train

    torch.set_num_threads(1)
    work = tmp_path_factory.mktemp("search_chain")
    fmnist = write_fake_fmnist(work / "fmnist")
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(_config(work, fmnist)))
    ds = load_config([config], "demo")
    files = DatasetFiles("demo", work)
    res = work / "results" / "demo"
    res.mkdir(parents=True)
    build_demo(ds["source"]["build"], ds["source"]["instances"], ds["source"]["images"])
    js = json.dumps
    split.main(["--dataset", "demo", "--source-json", js(ds["source"]),
                "--split-json", js(ds["split"]), "--out", str(files.split)])
    # two threads: oneDNN then computes a lone image on another path (see forward_batch)
    features.main(["--split", str(files.split), "--backbone-json", js(ds["features"]),
                   "--device", "cpu", "--threads", "2", "--out", str(files.features)])
    torch.set_num_threads(1)
    cc = {**ds["detector"]["train"], "cell": 32, "grid": 2, "fashion_mnist_dir": str(fmnist)}
    cell_classifier.main(["--config-json", js(cc), "--out", str(files.cell_classifier)])
    detect.main(["--split", str(files.split), "--detector-json", js(ds["detector"]),
                 "--checkpoint", str(files.cell_classifier), "--device", "cpu",
                 "--out", str(res / "detections.h5")])
    auxiliary.main(["--split", str(files.split), "--detections", str(res / "detections.h5"),
                    "--class-map-json", "{}", "--threshold",
                    str(ds["auxiliary"]["threshold"]), "--out", str(files.aux)])
    params = js({**ds["lagnh"]}, sort_keys=True)
    model = res / "models" / "lagnh_16.pt"
    model.parent.mkdir()
    train.main(["--method", "lagnh", "--bits", "16", "--split", str(files.split),
                "--features", str(files.features), "--aux", str(files.aux),
                "--params-json", params, "--out", str(model),
                "--history", str(res / "models" / "h.csv")])
    encode.main(["--model", str(model), "--split", str(files.split), "--features",
                 str(files.features), "--aux", str(files.aux), "--method", "lagnh",
                 "--params-json", params, "--out", str(files.codes("lagnh", 16))])
    sp, sattrs = read_h5(files.split, ["ids", "paths", "split"])
    paths = [str(Path(sattrs["image_root"]) / p) for p in sp["paths"]]
    return {"work": work, "config": config, "ds": ds, "files": files, "sp": sp,
            "paths": paths, "params": params, "model": model, "fmnist": fmnist}


def _codes_by_id(path: Path) -> dict[int, np.ndarray]:
    cd, _ = read_h5(path, ["ids", "codes"])
    return {int(i): c for i, c in zip(cd["ids"], cd["codes"], strict=True)}


def test_new_image_gets_the_encode_stages_code_bit_for_bit(chain):
    files, ds, sp = chain["files"], chain["ds"], chain["sp"]
    rows = np.flatnonzero(np.isin(sp["split"], (QUERY, RETRIEVAL)))
    encoder = load_encoder(files.codes("lagnh", 16), files)
    feats, _ = read_h5(files.features, ["features"])
    aux, _ = read_h5(files.aux, ["aux_labels"])
    stage = _codes_by_id(files.codes("lagnh", 16))
    assert 0 < aux["aux_labels"].mean() < 0.5  # the detector finds some classes, not all
    last = len(sp["ids"]) - 1  # alone in the features stage's last batch
    torch.set_num_threads(2)
    for batch in ([chain["paths"][r] for r in rows], [chain["paths"][rows[0]]],
                  [chain["paths"][last]]):
        picked = [chain["paths"].index(p) for p in batch]
        hashed = hash_images(batch, ds, files, encoder)
        X, ok, _ = features_of(batch, ds["features"])
        assert ok.all()
        assert np.array_equal(X, feats["features"][picked])  # bit-identical features
        assert np.array_equal(hashed.aux, aux["aux_labels"][picked])
        for got, r in zip(pack_codes(hashed.codes), picked, strict=True):
            if sp["split"][r] != TRAIN:  # train images have no code in codes.h5
                assert np.array_equal(got, stage[int(sp["ids"][r])])
    torch.set_num_threads(1)


def test_search_cli_ranks_like_the_evaluation_and_draws_a_gallery(chain, monkeypatch):
    files = chain["files"]
    monkeypatch.chdir(chain["work"])
    rows = np.flatnonzero(chain["sp"]["split"] == RETRIEVAL)
    image = chain["paths"][rows[3]]
    out, gallery = chain["work"] / "hits.json", chain["work"] / "hits.png"
    assert cli(["search", "--dataset", "demo", "--bits", "16", "--image", image, "-k", "8",
                "--configfile", str(chain["config"]), "--out", str(out),
                "--gallery", str(gallery)]) == 0
    result = json.loads(out.read_text())
    q = result["queries"][0]
    stage = _codes_by_id(files.codes("lagnh", 16))
    assert bytes.fromhex(q["code_hex"]) == stage[int(chain["sp"]["ids"][rows[3]])].tobytes()
    assert len(q["code"]) == 16 and set(q["code"]) <= {"0", "1"}
    # the evaluation's order: distance, then retrieval row; every distance recomputed by hand
    cd, _ = read_h5(files.codes("lagnh", 16), ["ids", "codes", "split"])
    db = cd["codes"][cd["split"] == RETRIEVAL]
    db_ids = list(cd["ids"][cd["split"] == RETRIEVAL])
    qbits = np.unpackbits(np.frombuffer(bytes.fromhex(q["code_hex"]), np.uint8))
    dist = [int((np.unpackbits(c) != qbits).sum()) for c in db]
    order = sorted(range(len(db)), key=lambda j: (dist[j], j))[:8]
    assert [h["id"] for h in q["results"]] == [int(db_ids[j]) for j in order]
    assert [h["hamming"] for h in q["results"]] == [dist[j] for j in order]
    assert q["results"][0]["hamming"] == 0 and all(h["set"] == "retrieval"
                                                   for h in q["results"])
    with Image.open(gallery) as im:
        assert im.width > 8 * 96 and im.height > 96


def test_missing_or_stale_artifacts_are_named_with_their_target(chain, monkeypatch, capsys,
                                                                 tmp_path):
    monkeypatch.chdir(chain["work"])
    image = chain["paths"][-2]
    base = ["search", "--dataset", "demo", "--image", image,
            "--configfile", str(chain["config"])]
    assert cli([*base, "--bits", "32"]) == 2
    err = capsys.readouterr().err
    assert "results/demo/codes/lagnh_32.h5 is missing" in err
    assert "snakemake --cores 4 results/demo/codes/lagnh_32.h5" in err
    stale = tmp_path / "stale.yaml"
    stale.write_text(yaml.safe_dump({"demo": {"features": {"image_size": 48}}}))
    assert cli([*base, "--bits", "16", "--configfile", str(chain["config"]), str(stale)]) == 2
    err = capsys.readouterr().err
    assert "image_size: 32 there, 48 now" in err
    assert "snakemake --cores 4 results/demo/features.h5" in err


def test_tags_replace_the_detector():
    names = ["T-shirt/top", "Trouser", "Bag"]
    assert aux_from_tags(["Bag,Trouser", "", " T-shirt/top "], names).tolist() == [
        [0, 1, 1], [0, 0, 0], [1, 0, 0]]
    with pytest.raises(ValueError, match="'Hat' is not a class of the dataset"):
        aux_from_tags(["Hat"], names)


def test_index_stages_encode_a_folder_exactly_as_the_encode_stage(chain):
    from pipeline.stages import index_aux, index_encode, index_features, index_split

    files, ds, work = chain["files"], chain["ds"], chain["work"]
    d = work / "results" / "demo" / "index" / "more"
    js = json.dumps
    index_split.main(["--dataset-split", str(files.split), "--dataset", "demo",
                      "--name", "more", "--out", str(d / "split.h5"),
                      "--index-json", js({"images": ds["source"]["images"]})])
    index_features.main(["--split", str(d / "split.h5"), "--backbone-json",
                         js(ds["features"]), "--device", "cpu", "--threads", "2",
                         "--out", str(d / "features.h5")])
    torch.set_num_threads(1)
    index_aux.main(["--split", str(d / "split.h5"), "--detector-json", js(ds["detector"]),
                    "--checkpoint", str(files.cell_classifier), "--auxiliary-json",
                    js(ds["auxiliary"]), "--device", "cpu", "--out", str(d / "aux.h5")])
    out = files.index_codes("more", "lagnh", 16)
    index_encode.main(["--model", str(chain["model"]), "--split", str(d / "split.h5"),
                       "--features", str(d / "features.h5"), "--aux", str(d / "aux.h5"),
                       "--method", "lagnh", "--params-json", chain["params"],
                       "--out", str(out)])
    isp, _ = read_h5(d / "split.h5", ["ids", "paths", "split"])
    assert len(isp["ids"]) == N_IMAGES and (isp["split"] == RETRIEVAL).all()
    iaux, _ = read_h5(d / "aux.h5", ["aux_labels"])
    daux, _ = read_h5(files.aux, ["aux_labels"])
    assert np.array_equal(iaux["aux_labels"], daux["aux_labels"])  # same images, same order
    ifeat, _ = read_h5(d / "features.h5", ["features"])
    dfeat, _ = read_h5(files.features, ["features"])
    assert np.array_equal(ifeat["features"], dfeat["features"])
    index_codes = _codes_by_id(out)
    stage = _codes_by_id(files.codes("lagnh", 16))
    by_path = {Path(p).name: int(i) for p, i in zip(chain["sp"]["paths"], chain["sp"]["ids"],
                                                    strict=True)}
    compared = 0
    for path, iid in zip(isp["paths"], isp["ids"], strict=True):
        sid = by_path[Path(path).name]
        if sid in stage:
            assert np.array_equal(index_codes[int(iid)], stage[sid]), path
            compared += 1
    assert compared == 21  # every query and retrieval image
    # search --index: the retrieval set first, then the index, at equal distance
    from pipeline.retrieval.new_images import search_images

    image = chain["paths"][int(np.flatnonzero(chain["sp"]["split"] == QUERY)[0])]
    both = search_images([image], ds, files, "lagnh", 16, 40, index="more")
    hits = both["queries"][0]["results"]
    assert both["database"]["n_codes"] == 15 + N_IMAGES
    sets = [h["set"] for h in hits]
    keys = [(h["hamming"], h["set"] != "retrieval") for h in hits]
    assert keys == sorted(keys)
    assert "index:more" in sets and "retrieval" in sets
    only = search_images([image], ds, files, "lagnh", 16, 3, index="more", index_only=True)
    assert only["queries"][0]["results"][0]["hamming"] == 0
    assert {h["set"] for h in only["queries"][0]["results"]} == {"index:more"}


def test_index_table_matches_classes_by_name(coco_collection, tmp_path):
    table = index_table(coco_collection["images"], coco_collection["instances"],
                        ["dog", "cat", "bird"], "x")
    assert table.ids.tolist() == list(range(1, 13)) and (table.split == RETRIEVAL).all()
    # image 2: categories [2, 5, 9][2 % 3] = kite (dropped) and [2, 5, 9][0] = cat
    assert table.labels[1].tolist() == [0, 1, 0]
    assert table.labels[11].tolist() == [0, 0, 0]
    folder = index_table(coco_collection["images"], None, ["dog"], "y")
    assert list(folder.paths[:2]) == ["img01.jpg", "img02.jpg"] and folder.labels.sum() == 0
    with pytest.raises(FileNotFoundError, match="index.NAME.images"):
        index_table(tmp_path / "nowhere", None, ["dog"], "z")


def test_new_mosaic_uses_items_no_demo_image_uses(chain, tmp_path):
    build = chain["ds"]["source"]["build"]
    instances = chain["ds"]["source"]["instances"]
    used = {a["fashion_mnist_train_index"]
            for a in json.loads(Path(instances).read_text())["annotations"]}
    info = new_mosaic(["3", "Sneaker"], build, instances, tmp_path / "m.png", seed=4)
    assert info["classes"] == ["Dress", "Sneaker"]
    for seed in range(12):
        items = new_mosaic([3, 7], build, instances, tmp_path / "s.png", seed=seed)
        assert not set(items["fashion_mnist_train_index"]) & used
    labels = np.arange(200) % 10  # the fake files' classes
    assert [labels[i] for i in info["fashion_mnist_train_index"]] == [3, 7]
    with Image.open(tmp_path / "m.png") as im:
        assert im.size == (64, 64)
    again = new_mosaic(["3", "Sneaker"], build, instances, tmp_path / "n.png", seed=4)
    assert again["fashion_mnist_train_index"] == info["fashion_mnist_train_index"]
    assert (tmp_path / "m.png").read_bytes() == (tmp_path / "n.png").read_bytes()
    with pytest.raises(ValueError, match="give an index 0-9"):
        new_mosaic(["Hat"], build, instances, tmp_path / "x.png")


def test_index_target_is_planned_and_a_bad_index_refused(tmp_path):
    scenario = ROOT / ".test" / "config.yaml"
    extra = tmp_path / "index.yaml"
    extra.write_text(yaml.safe_dump({"demo": {"index": {"more": {"images": str(tmp_path)}}}}))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
           str(tmp_path), "-n", "results/demo/index/more/codes/lagnh_16.h5", "--configfile",
           str(scenario), str(extra)]
    run = subprocess.run(cmd, capture_output=True, text=True, env=venv_env(), cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    text = run.stdout + run.stderr
    for rule in ("index_split", "index_features", "index_aux", "index_encode", "train"):
        assert f"rule {rule}:" in text or f"\n{rule} " in text, rule
    extra.write_text(yaml.safe_dump({"demo": {"index": {"more": {"folder": str(tmp_path)}}}}))
    run = subprocess.run(cmd, capture_output=True, text=True, env=venv_env(), cwd=ROOT)
    text = run.stdout + run.stderr
    assert run.returncode != 0 and "'images' is a required property" in text, text[-2000:]



def test_detections_given_on_the_command_line_replace_the_detector(chain, monkeypatch, tmp_path):
    """``--detections``: detections.json's layout, image_id = position on the command line."""
    monkeypatch.chdir(chain["work"])
    det, det_attrs = read_h5(chain["work"] / "results/demo/detections.h5")
    aux, _ = read_h5(chain["files"].aux, ["ids", "aux_labels"])
    row = int(np.flatnonzero(aux["aux_labels"].sum(1) > 0)[-1])  # an image with labels
    mine = {"categories": det_attrs["categories"],  # that image's detections, image_id 1
            "detections": [{"image_id": 1, "category_id": int(c), "score": float(s)}
                           for r, c, s in zip(det["det_row"], det["det_category_id"],
                                              det["det_score"], strict=True) if r == row]}
    given = tmp_path / "det.json"
    given.write_text(json.dumps(mine))
    out = tmp_path / "hits.json"
    assert cli(["search", "--dataset", "demo", "--bits", "16", "--image",
                chain["paths"][row], "--detections", str(given), "-k", "2",
                "--configfile", str(chain["config"]), "--out", str(out)]) == 0
    q = json.loads(out.read_text())["queries"][0]
    names = read_h5(chain["files"].split, ["ids"])[1]["class_names"]
    assert q["aux_labels"] == [names[c] for c in np.flatnonzero(aux["aux_labels"][row])]
    given.write_text(json.dumps({"detections": []}))
    assert cli(["search", "--dataset", "demo", "--bits", "16", "--image",
                chain["paths"][row], "--detections", str(given),
                "--configfile", str(chain["config"])]) == 2
