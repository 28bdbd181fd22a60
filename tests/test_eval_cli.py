"""Command lines of the evaluation: evaluate, report, plots, gallery and search, on tiny files."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from pipeline.__main__ import search_main
from pipeline.artifacts import write_h5
from pipeline.codes import pack_codes
from pipeline.retrieval.metrics import mean_average_precision, mean_average_precision_float
from pipeline.retrieval.scoring import write_json
from pipeline.stages import gallery
from pipeline.stages.curves import main as plots_main
from pipeline.stages.evaluate import main as evaluate_main
from pipeline.stages.evaluate_float import main as evaluate_float_main
from pipeline.stages.report import main as report_main
from pipeline.stages.table import main as table_main

BITS = 16


@pytest.fixture
def dataset(tmp_path):
    """split.h5 (8 train, 10 query, 20 retrieval, 2 unused rows), codes, features, images."""
    rng = np.random.default_rng(0)
    split = np.array([0] * 8 + [1] * 10 + [2] * 20 + [255] * 2, np.uint8)
    rng.shuffle(split)
    n = len(split)
    ids = np.arange(n, dtype=np.int64) * 7 + 100
    paths = np.array([f"img/{i}.png" for i in ids])
    labels = (rng.random((n, 5)) < 0.3).astype(np.uint8)
    labels[np.flatnonzero(split == 1)[0]] = 0  # one query without any label: a zero-hit query
    root = tmp_path / "images"
    (root / "img").mkdir(parents=True)
    for i, p in zip(ids, paths, strict=True):
        if i != ids[split == 2][0]:  # the first retrieval image is missing on disk
            Image.new("RGB", (24, 20), tuple(int(v) for v in rng.integers(0, 255, 3))).save(
                root / p)
    write_h5(tmp_path / "split.h5", {"ids": ids, "paths": paths, "labels": labels,
                                     "split": split}, stage="split",
             attrs={"dataset": "tiny", "image_root": str(root),
                    "class_names": ["a", "b", "c", "d", "e"]})
    rows = np.isin(split, (1, 2))
    codes_b = rng.random((int(rows.sum()), BITS)) < 0.5
    write_h5(tmp_path / "itq_16.h5", {"ids": ids[rows], "codes": pack_codes(codes_b),
                                      "split": split[rows]}, stage="codes",
             attrs={"method": "itq", "bits": BITS})
    feats = rng.normal(size=(n, 6)).astype(np.float32)
    valid = np.ones(n, np.uint8)
    write_h5(tmp_path / "features.h5", {"ids": ids, "features": feats, "valid": valid},
             stage="features")
    return {"dir": tmp_path, "split": split, "ids": ids, "labels": labels, "rows": rows,
            "codes": codes_b, "feats": feats, "paths": paths}


def _run_eval(ds, *extra):
    out = ds["dir"] / "out.json"
    main = evaluate_float_main if "--features" in extra else evaluate_main
    rc = main(["--split", str(ds["dir"] / "split.h5"), *extra, "--out", str(out)])
    return rc, out


def test_evaluate_codes_round_trip(dataset):
    ds = dataset
    rc, out = _run_eval(ds, "--codes", str(ds["dir"] / "itq_16.h5"), "--topk", "5",
                        "--pk-grid", "1,3,50")
    assert rc == 0
    res = json.loads(out.read_text())
    sub = ds["split"][ds["rows"]]
    lab = ds["labels"][ds["rows"]]
    q, r = sub == 1, sub == 2
    want = mean_average_precision(ds["codes"][q], ds["codes"][r], lab[q], lab[r], topk=5)
    assert res["method"] == "itq" and res["bits"] == BITS
    assert res["map"] == pytest.approx(want.map, abs=1e-12)
    assert res["topk"] == 5 and res["zero_hit"] == "drop"
    assert res["n_queries"] == want.n_queries_used < res["n_queries_total"] == 10
    assert res["n_retrieval"] == 20
    assert res["precision_at_k"]["k"] == [1, 3, 20]  # 50 clipped to the retrieval set
    assert res["pr_radius"]["radius"] == list(range(BITS + 1))
    assert len(res["pr_radius"]["precision"]) == BITS + 1
    assert res["pr_radius"]["recall"][-1] == pytest.approx(1.0)
    assert res["dataset"] == "tiny" and "index" in res["tie_rule"]


def test_evaluate_topk_all_and_zero(dataset):
    ds = dataset
    rc, out = _run_eval(ds, "--codes", str(ds["dir"] / "itq_16.h5"), "--topk", "all",
                        "--zero-hit", "zero", "--no-pr")
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["topk"] == "all" and res["zero_hit"] == "zero" and res["pr_radius"] is None
    assert res["n_queries"] == res["n_queries_total"] == 10


def test_evaluate_float(dataset):
    ds = dataset
    rc, out = _run_eval(ds, "--features", str(ds["dir"] / "features.h5"), "--method-name",
                        "float", "--topk", "7")
    assert rc == 0
    res = json.loads(out.read_text())
    sp, lab, f = ds["split"], ds["labels"], ds["feats"]
    want = mean_average_precision_float(f[sp == 1], f[sp == 2], lab[sp == 1], lab[sp == 2],
                                        topk=7)
    assert res["method"] == "float" and res["bits"] is None and res["pr_radius"] is None
    assert res["map"] == pytest.approx(want.map, abs=1e-12)
    assert res["n_invalid_excluded"] == 0


def test_evaluate_float_excludes_invalid_rows(dataset):
    ds = dataset
    valid = np.ones(len(ds["ids"]), np.uint8)
    valid[np.flatnonzero(ds["split"] == 2)[:2]] = 0
    write_h5(ds["dir"] / "features.h5", {"ids": ds["ids"], "features": ds["feats"],
                                         "valid": valid}, stage="features")
    rc, out = _run_eval(ds, "--features", str(ds["dir"] / "features.h5"), "--method-name",
                        "float")
    res = json.loads(out.read_text())
    assert rc == 0 and res["n_invalid_excluded"] == 2 and res["n_retrieval"] == 18


def test_evaluate_row_mismatch(dataset, capsys):
    ds = dataset
    rows = ds["rows"]
    keep = np.ones(int(rows.sum()), bool)
    keep[3] = False
    write_h5(ds["dir"] / "bad.h5", {"ids": ds["ids"][rows][keep],
                                    "codes": pack_codes(ds["codes"][keep]),
                                    "split": ds["split"][rows][keep]}, stage="codes",
             attrs={"method": "itq", "bits": BITS})
    rc, out = _run_eval(ds, "--codes", str(ds["dir"] / "bad.h5"))
    assert rc == 2 and not out.exists()
    assert "row mismatch" in capsys.readouterr().err


def test_evaluate_split_mismatch(dataset, capsys):
    ds = dataset
    rows = ds["rows"]
    wrong = ds["split"][rows].copy()
    wrong[0] = 3 - wrong[0]  # swap query <-> retrieval for one row
    write_h5(ds["dir"] / "bad.h5", {"ids": ds["ids"][rows], "codes": pack_codes(ds["codes"]),
                                    "split": wrong}, stage="codes",
             attrs={"method": "itq", "bits": BITS})
    rc, _ = _run_eval(ds, "--codes", str(ds["dir"] / "bad.h5"))
    assert rc == 2 and "re-encode" in capsys.readouterr().err


def test_evaluate_missing_file(dataset, capsys):
    rc, out = _run_eval(dataset, "--codes", str(dataset["dir"] / "nope.h5"))
    assert rc == 2 and not out.exists()
    assert "not found" in capsys.readouterr().err


def test_evaluate_features_need_method_name(dataset, capsys):
    rc, _ = _run_eval(dataset, "--features", str(dataset["dir"] / "features.h5"))
    assert rc == 2 and "--method-name" in capsys.readouterr().err


# ---------------------------------------------------------------- report and plots


def fake_result(method, bits, value, n_q=100):
    ks = [1, 50, 100]
    return {"method": method, "bits": bits, "map": value, "topk": 1000, "zero_hit": "drop",
            "n_queries": n_q, "n_queries_total": 120, "n_retrieval": 1000, "dataset": "tiny",
            "precision_at_k": {"k": ks, "precision": [value, value - 0.1, value - 0.2]},
            "pr_radius": None if bits is None else {
                "radius": list(range(bits + 1)),
                "precision": list(np.linspace(0.9, 0.2, bits + 1)),
                "recall": list(np.linspace(0.0, 1.0, bits + 1))}}


@pytest.fixture
def results(tmp_path):
    spec = [("lagnh", 16, 0.81), ("lagnh", 32, 0.85), ("itq", 16, 0.83), ("itq", 32, 0.75),
            ("random", 16, 0.9), ("random", 32, 0.2), ("zzz", 16, 0.5), ("float", None, 0.95)]
    paths = []
    for m, b, v in spec:
        p = tmp_path / "eval" / f"{m}_{b}.json"
        write_json(fake_result(m, b, v), p)
        paths.append(str(p))
    return paths


def test_report_tables(results, tmp_path):
    mcsv, pcsv, md = tmp_path / "map.csv", tmp_path / "pk.csv", tmp_path / "t.md"
    rc = report_main(["--inputs", *results, "--map-csv", str(mcsv), "--pk-csv", str(pcsv)])
    rc += table_main(["--inputs", *results, "--out", str(md), "--dataset", "tiny"])
    assert rc == 0
    rows = list(csv.DictReader(mcsv.open()))
    assert [r["method"] for r in rows] == ["random", "itq", "lagnh", "zzz", "float"]
    assert list(rows[0]) == ["method", "16 bits", "32 bits", "map_at", "zero_hit", "n_queries"]
    assert rows[1]["16 bits"] == "0.8300" and rows[2]["32 bits"] == "0.8500"
    assert rows[3]["32 bits"] == ""  # zzz has no 32-bit result
    assert rows[4]["16 bits"] == rows[4]["32 bits"] == "0.9500"  # float repeated
    assert rows[0]["map_at"] == "1000" and rows[0]["zero_hit"] == "drop"
    assert rows[0]["n_queries"] == "100"
    pk = list(csv.DictReader(pcsv.open()))
    assert pk[0] == {"method": "random", "bits": "16", "k": "1", "precision": "0.900000"}
    assert {r["bits"] for r in pk if r["method"] == "float"} == {""}
    assert len(pk) == 8 * 3
    text = md.read_text()
    # best excludes random (0.90 at 16 bits) and float (0.95): ITQ wins 16, LAGNH wins 32
    assert "| ITQ | **0.8300** | 0.7500 |" in text
    assert "| LAGNH | 0.8100 | **0.8500** |" in text
    assert "| Random | 0.9000 | 0.2000 |" in text
    assert "| Float (Euclidean) | 0.9500 | 0.9500 |" in text
    assert "| zzz | 0.5000 | – |" in text
    assert text.startswith("Table: MAP@1000 on tiny") and "dropped" in text
    assert "ties broken by retrieval index" in text


def test_report_rejects_mixed_conventions(results, tmp_path, capsys):
    odd = fake_result("sh", 16, 0.5)
    odd["zero_hit"] = "zero"
    write_json(odd, tmp_path / "sh.json")
    rc_table = table_main(["--inputs", *results, str(tmp_path / "sh.json"), "--out",
                           str(tmp_path / "t.md")])
    assert rc_table == 2 and not (tmp_path / "t.md").exists()
    rc = report_main(["--inputs", *results, str(tmp_path / "sh.json"), "--map-csv",
                      str(tmp_path / "m.csv"), "--pk-csv", str(tmp_path / "p.csv")])
    assert rc == 2 and "mix MAP conventions" in capsys.readouterr().err
    assert not (tmp_path / "m.csv").exists()


def test_plots_write_files(results, tmp_path):
    outs = {k: tmp_path / f"{k}.{k[-3:]}" for k in ("pk-png", "pk-pdf", "pr-png", "pr-pdf")}
    args = ["--inputs", *results, "--title", "tiny"]
    for k, p in outs.items():
        args += [f"--{k}", str(p)]
    assert plots_main(args) == 0
    for p in outs.values():
        assert p.stat().st_size > 1000
    assert outs["pk-png"].read_bytes()[:4] == b"\x89PNG"
    assert outs["pk-pdf"].read_bytes()[:4] == b"%PDF"


# ---------------------------------------------------------------- gallery and search


def test_gallery(dataset):
    ds = dataset
    out = ds["dir"] / "gallery.png"
    rc = gallery.main(["--split", str(ds["dir"] / "split.h5"), "--codes",
                       str(ds["dir"] / "itq_16.h5"), str(ds["dir"] / "itq_16.h5"),
                       "--n-queries", "2", "--k", "4", "--seed", "0", "--thumb", "32",
                       "--out", str(out)])
    assert rc == 0
    img = Image.open(out)
    assert img.format == "PNG" and img.width > 5 * 32 and img.height > 2 * 2 * 32


def test_search_by_id_and_path(dataset, capsys):
    ds = dataset
    rows = ds["rows"]
    r_rows = np.flatnonzero(ds["split"] == 2)
    target = r_rows[5]
    args = ["--codes", str(ds["dir"] / "itq_16.h5"), "--split", str(ds["dir"] / "split.h5"),
            "--k", "3"]
    assert search_main([*args, "--id", str(ds["ids"][target])]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[0].split()[:3] == ["rank", "id", "hamming"]
    # the code of this retrieval image is at distance 0 from itself
    code = ds["codes"][np.count_nonzero(rows[:target])]
    db = ds["codes"][ds["split"][rows] == 2]
    d = (db != code).sum(1)
    first = r_rows[np.argsort(d, kind="stable")[0]]
    assert lines[1].split()[:3] == ["1", str(ds["ids"][first]), "0"]
    assert search_main([*args, "--path", str(ds["paths"][target])]) == 0
    assert capsys.readouterr().out.strip().splitlines()[1] == lines[1]


def test_search_through_package_entry_point(dataset, capsys):
    from pipeline.__main__ import main as pipeline_main

    ds = dataset
    target = ds["ids"][np.flatnonzero(ds["split"] == 1)[2]]  # a query image
    rc = pipeline_main(["search", "--codes", str(ds["dir"] / "itq_16.h5"), "--split",
                        str(ds["dir"] / "split.h5"), "--id", str(target), "--k", "5"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and len(out) == 6
    assert [line.split()[0] for line in out[1:]] == ["1", "2", "3", "4", "5"]
    dists = [int(line.split()[2]) for line in out[1:]]
    assert dists == sorted(dists)


def test_search_errors(dataset, capsys):
    ds = dataset
    args = ["--codes", str(ds["dir"] / "itq_16.h5"), "--split", str(ds["dir"] / "split.h5")]
    train_id = ds["ids"][np.flatnonzero(ds["split"] == 0)[0]]
    assert search_main([*args, "--id", str(train_id)]) == 2
    assert "train image" in capsys.readouterr().err
    assert search_main([*args, "--id", "-5"]) == 2
    assert "no image with id" in capsys.readouterr().err


def test_evaluate_codes_narrower_than_the_column(dataset):
    """The aux row's code is one bit per class (5 here) in the 16-bit column."""
    ds = dataset
    rows = ds["rows"]
    codes = ds["labels"][rows].astype(bool)
    path = ds["dir"] / "aux_16.h5"
    write_h5(path, {"ids": ds["ids"][rows], "codes": pack_codes(codes),
                    "split": ds["split"][rows]}, stage="codes",
             attrs={"method": "aux", "bits": BITS, "code_bits": 5, "uses_aux": True})
    rc, out = _run_eval(ds, "--codes", str(path), "--topk", "all")
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["bits"] == BITS and res["code_bits"] == 5 and res["uses_aux"] is True
    assert len(res["pr_radius"]["radius"]) == 6  # radii 0..5 of a 5-bit code
    sub, lab = ds["split"][rows], ds["labels"][rows]
    ref = mean_average_precision(codes[sub == 1], codes[sub == 2], lab[sub == 1], lab[sub == 2],
                                 topk=None, device="numpy")
    assert res["map"] == pytest.approx(ref.map)


def test_report_names_rows_that_read_aux_labels(tmp_path):
    specs = [("itq", 16, 0.4, {}), ("lagnh", 16, 0.7, {"uses_aux": True}),
             ("aux", 16, 0.72, {"uses_aux": True, "code_bits": 10}),
             ("aux_itq", 16, 0.6, {"uses_aux": True, "selected": {
                 "repeats": 1, "source": "validation", "validation_map": 0.61234}}),
             ("float", None, 0.5, {})]
    paths = []
    for m, b, v, extra in specs:
        p = tmp_path / f"{m}_{b}.json"
        write_json({**fake_result(m, b, v), **extra}, p)
        paths.append(str(p))
    md = tmp_path / "t.md"
    rc = table_main(["--inputs", *paths, "--out", str(md)])
    assert rc == 0
    text = md.read_text()
    assert "auxiliary labels: Aux labels as code, Aux bits + ITQ, LAGNH." in text
    assert "the 10-bit multi-hot vector itself" in text
    assert "k=1 at 16 bits (validation MAP 0.612)" in text
    rows = [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| ")]
    assert rows[1:] == ["| ITQ", "| Aux labels as code", "| Aux bits + ITQ", "| LAGNH",
                        "| Float (Euclidean)"]
    assert "| Aux labels as code | **0.7200** |" in text  # a reference row that wins is bold


def test_unreadable_images_are_left_out_of_every_row(dataset, tmp_path):
    """One rule for codes and float: rows with valid=0 (unreadable image) are excluded from
    queries and retrieval set alike and counted; encode copies the features' flag."""
    import torch

    from pipeline.baselines import random as random_method
    from pipeline.retrieval.tables import caption
    from pipeline.stages.encode import main as encode_main

    ds = dataset
    sp, ids = ds["split"], ds["ids"]
    valid = np.ones(len(ids), np.uint8)
    bad = [np.flatnonzero(sp == 1)[1], *np.flatnonzero(sp == 2)[1:3]]
    valid[bad] = 0
    feats = ds["feats"].copy()
    feats[bad] = 0
    write_h5(ds["dir"] / "features.h5", {"ids": ids, "features": feats, "valid": valid},
             stage="features")
    write_h5(ds["dir"] / "aux.h5", {"ids": ids, "aux_labels": ds["labels"]}, stage="auxiliary")
    state = random_method.fit(feats[sp == 0], ds["labels"][sp == 0], BITS, {}, 0)
    torch.save({"method": "random", "impl": "random", "bits": BITS, "params": {}, "seed": 0,
                "state": state}, tmp_path / "model.pt")
    codes = ds["dir"] / "random_16.h5"
    assert encode_main(["--model", str(tmp_path / "model.pt"), "--split",
                        str(ds["dir"] / "split.h5"), "--features", str(ds["dir"] / "features.h5"),
                        "--aux", str(ds["dir"] / "aux.h5"), "--out", str(codes)]) == 0
    rc, out = _run_eval(ds, "--codes", str(codes))
    hashed = json.loads(out.read_text())
    rc2, out2 = _run_eval(ds, "--features", str(ds["dir"] / "features.h5"), "--method-name",
                          "float")
    flt = json.loads(out2.read_text())
    assert rc == rc2 == 0
    for res in (hashed, flt):
        assert res["n_invalid_excluded"] == 3
        assert res["n_queries_total"] == 9 and res["n_retrieval"] == 18
    assert "3 query/retrieval images whose files could not be read are left out" in \
        caption([hashed, flt], "tiny")


def test_curve_colours_are_distinct_for_the_demo_rows():
    from pipeline.plots.precision import _colours

    rows = ["random", "lsh", "sklsh", "sh", "pcah", "itq", "sgh", "aux", "aux_itq", "lagnh",
            "lagnh_batch"]
    colours = _colours(rows)
    assert len({tuple(c) for c in colours.values()}) == len(rows)
