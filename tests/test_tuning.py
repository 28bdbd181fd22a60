"""Settings by cross-validation (rules/tune.smk, pipeline/tuning.py), on tiny synthetic inputs.

* states saved along one run equal separate runs of that many epochs;
* tuning never reads query or retrieval rows: NaN features and flipped labels there give the
  same scores and selection;
* the selection is recorded in the model checkpoint, the codes' attrs and the table caption;
* workflow: a changed grid reruns the grid points and the tune checkpoint, and training only
  when the selection changed.
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

from pipeline.artifacts import read_attrs, write_h5
from pipeline.data.split_table import QUERY, RETRIEVAL, TRAIN
from pipeline.lagnh import method as lagnh
from pipeline.stages import encode as encode_stage
from pipeline.stages import train as train_stage
from pipeline.stages import tune as tune_stage
from pipeline.stages import tune_point as tune_point_stage
from pipeline.tuning import grid_points, n_trainings, select
from tests.conftest import job_counts, venv_env

ROOT = Path(__file__).resolve().parents[1]
TINY = {"epochs": 2, "hidden": 16, "d_att": 8, "batch_size": 32, "device": "cpu"}
TUNE = {"relevance": "labels", "query_fraction": 0.2, "database_fraction": 0.3, "seed": 0,
        "topk": 10, "bits": 8}


def make_inputs(folder: Path, poison: bool = False, n=(60, 10, 30), d=12, c=4) -> Path:
    """split/features/aux .h5 of n = (train, query, retrieval) rows; ``poison`` puts NaN
    features, all-ones labels and aux into the query and retrieval rows."""
    rng = np.random.default_rng(0)
    total = sum(n)
    part = np.repeat([TRAIN, QUERY, RETRIEVAL], n).astype(np.uint8)
    labels = (rng.random((total, c)) < 0.4).astype(np.uint8)
    feats = (labels @ rng.normal(size=(c, d)) + 0.3 * rng.normal(size=(total, d))).astype(
        np.float32)
    aux = labels.copy()
    if poison:
        test = part != TRAIN
        feats[test], labels[test], aux[test] = np.nan, 1, 1
    ids = np.arange(total, dtype=np.int64)
    folder.mkdir(parents=True, exist_ok=True)
    write_h5(folder / "split.h5", {"ids": ids, "split": part, "labels": labels}, stage="split",
             attrs={"protocol": "random", "dataset": "demo"})
    write_h5(folder / "features.h5", {"ids": ids, "features": feats,
                                      "valid": np.ones(total, np.uint8)}, stage="features")
    write_h5(folder / "aux.h5", {"ids": ids, "aux_labels": aux}, stage="auxiliary")
    return folder


def test_grid_counts_trainings_without_epochs():
    grid = {"lambda1": [1, 10, 100], "lambda3": [0.1, 1], "epochs": [50, 100, 300]}
    assert n_trainings(grid) == 6 and len(grid_points(grid)) == 6


def test_checkpoints_along_one_run_equal_shorter_runs():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 12)).astype(np.float32)
    Y = (rng.random((40, 4)) < 0.4).astype(np.float32)
    states = lagnh.fit_checkpoints(X, Y, 8, {**TINY, "epochs": 99}, 0, [1, 3])
    for e in (1, 3):
        alone = lagnh.fit(X, Y, 8, {**TINY, "epochs": e}, 0)
        assert states[e]["options"]["epochs"] == e
        for k, v in alone["generator"].items():
            assert torch.equal(v, states[e]["generator"][k]), (e, k)
        assert np.array_equal(lagnh.encode(alone, X, Y, {}), lagnh.encode(states[e], X, Y, {}))


def run_tuning(folder: Path, grid: dict) -> dict:
    points = []
    for i, point in enumerate(grid_points(grid)):
        spec = {"override": point, "params": {**TINY, **point},
                "epochs": grid.get("epochs", [TINY["epochs"]])}
        out = folder / f"point_{i}.json"
        tune_point_stage.main(["--split", str(folder / "split.h5"), "--features",
                               str(folder / "features.h5"), "--aux", str(folder / "aux.h5"),
                               "--point-json", json.dumps(spec), "--tune-json",
                               json.dumps(TUNE), "--seed", "0", "--threads", "1", "--out",
                               str(out)])
        points.append(str(out))
    tune_stage.main(["--inputs", *points, "--tune-json", json.dumps(TUNE), "--out",
                     str(folder / "tune.json")])
    return json.loads((folder / "tune.json").read_text())


def test_tuning_never_reads_query_or_retrieval_rows(tmp_path):
    grid = {"lambda1": [1, 100], "epochs": [1, 2]}
    clean = run_tuning(make_inputs(tmp_path / "clean"), grid)
    poisoned = run_tuning(make_inputs(tmp_path / "poisoned", poison=True), grid)
    assert clean["selected"] == poisoned["selected"]
    assert clean["scores"] == poisoned["scores"]
    assert len(clean["scores"]) == 4 and clean["n_trainings"] == 2


def test_selection_recorded_in_model_codes_and_caption(tmp_path):
    from pipeline.retrieval.tables import aux_note

    folder = make_inputs(tmp_path)
    sel = {"selected": {"lambda1": 10, "epochs": 1}, "val_map": 0.5, **TUNE}
    (tmp_path / "sel.json").write_text(json.dumps(sel))
    files = ["--split", str(folder / "split.h5"), "--features", str(folder / "features.h5"),
             "--aux", str(folder / "aux.h5")]
    params = {**TINY, "lambda1": 10, "epochs": 1}
    train_stage.main(["--method", "lagnh", "--bits", "8", *files, "--params-json",
                      json.dumps(params), "--tune", str(tmp_path / "sel.json"), "--out",
                      str(tmp_path / "m.pt"), "--history", str(tmp_path / "h.csv")])
    ckpt = torch.load(tmp_path / "m.pt", weights_only=False)
    assert ckpt["settings_source"]["lambda1"].startswith("tuning (validation MAP 0.5000")
    assert ckpt["settings_source"]["hidden"] == "config"
    assert ckpt["state"]["selected"]["validation_map"] == 0.5
    encode_stage.main(["--model", str(tmp_path / "m.pt"), *files, "--out",
                       str(tmp_path / "c.h5")])
    attrs = read_attrs(tmp_path / "c.h5")
    assert attrs["selected"]["lambda1"] == 10 and attrs["selected"]["relevance"] == "labels"
    assert attrs["settings_source"]["epochs"].startswith("tuning")
    note = aux_note([{"method": "lagnh", "bits": 8, "uses_aux": True,
                      "selected": attrs["selected"]}])
    assert "epochs=1, lambda1=10 (validation MAP 0.500, relevance labels) chosen" in note
    with pytest.raises(SystemExit):  # a selection the parameters do not carry is refused
        train_stage.main(["--method", "lagnh", "--bits", "8", *files, "--params-json",
                          json.dumps(TINY), "--tune", str(tmp_path / "sel.json"), "--out",
                          str(tmp_path / "m2.pt"), "--history", str(tmp_path / "h2.csv")])


def test_select_prefers_best_then_earlier_point_then_fewer_epochs():
    pts = [{"params": {"a": 1}, "rows": [{"epochs": 5, "map": 0.5}, {"epochs": 9, "map": 0.5}]},
           {"params": {"a": 2}, "rows": [{"epochs": 5, "map": 0.5}]}]
    assert select(pts) == {"selected": {"a": 1, "epochs": 5}, "val_map": 0.5}


# --- workflow ---------------------------------------------------------------------------------
RULES = ["tune_point", "tune", "train"]


def workflow_config(tmp_path: Path, grid: dict, name: str) -> Path:
    cfg = yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())
    demo = cfg["demo"]
    demo["lagnh"] = {k: v for k, v in TINY.items() if k != "device"}
    demo["tune"] = {**{k: v for k, v in TUNE.items() if k != "bits"}, "enabled": True,
                    "bits": 16, "grid": grid}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def snakemake(work: Path, config: Path, *args: str) -> str:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
           str(work), "--configfile", str(config), "--cores", "1", *args, "--allowed-rules",
           *RULES]
    run = subprocess.run(cmd, capture_output=True, text=True, env=venv_env(), cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout + run.stderr


@pytest.mark.slow
def test_changed_grid_retrains_only_when_the_selection_changes(tmp_path):
    work = tmp_path / "work"
    make_inputs(work / "results" / "demo")
    target = "results/demo/models/lagnh_16.pt"
    first = workflow_config(tmp_path, {"lambda1": [1, 100], "epochs": [1, 2]}, "first")
    assert job_counts(snakemake(work, first, target)) == {"tune_point": 2, "tune": 1, "train": 1}
    assert "2 training(s) per tuned row" in snakemake(work, first, "-n", target)
    assert job_counts(snakemake(work, first, "-n", target)) == {}
    # the same selection from a changed grid: lr listed at its configured value
    same = workflow_config(tmp_path, {"lambda1": [1, 100], "epochs": [1, 2],
                                      "lr": [1.0e-4]}, "same")
    ran = snakemake(work, same, target)  # (jobs after the checkpoint are not in Job stats)
    assert job_counts(ran) == {"tune_point": 2, "tune": 1} and "rule train:" not in ran
    assert job_counts(snakemake(work, same, "-n", target)) == {}
    # a grid whose selection differs: training reruns
    other = workflow_config(tmp_path, {"lambda1": [7], "epochs": [1]}, "other")
    ran = snakemake(work, other, target)
    assert job_counts(ran) == {"tune_point": 1, "tune": 1} and "rule train:" in ran
    ckpt = torch.load(work / target, weights_only=False)
    assert ckpt["params"]["lambda1"] == 7 and ckpt["params"]["epochs"] == 1


def test_figures_from_point_files(tmp_path):
    from pipeline.stages import figure as figure_stage
    from pipeline.tuning import figure_points

    figs = {"epochs": [50, 100], "lambdas": [1e-5, 1, 1000], "sensitivity_epochs": 7}
    assert figure_points("epochs", figs, 300) == {"run": ({}, [50, 100])}
    points = figure_points("sensitivity", figs, 300)
    assert len(points) == 9 and points["lambda2_2"] == ({"lambda2": 1000.0}, [7])
    paths = []
    for name, (override, epochs) in points.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"params": override,
                                    "rows": [{"epochs": epochs[0], "map": 0.5}]}))
        paths.append(str(path))
    out = {k: str(tmp_path / f"s.{k}") for k in ("png", "pdf", "csv")}
    figure_stage.main(["--figure", "sensitivity", "--bits", "32", "--inputs", *paths,
                       *[a for k, v in out.items() for a in (f"--{k}", v)]])
    csv = (tmp_path / "s.csv").read_text().splitlines()
    assert csv[0] == "parameter,value,epochs,map" and len(csv) == 10 and ",7," in csv[1]
    assert Path(out["png"]).stat().st_size > 0 and Path(out["pdf"]).stat().st_size > 0


def test_figure_cost_printed_and_one_job_per_training(tmp_path):
    """Before anything runs, a requested figure prints its trainings, and the DAG holds
    exactly that many figure_point jobs (Figure 3: one run; Figure 4: 3 lambdas x values)."""
    work = tmp_path / "work"
    make_inputs(work / "results" / "demo")
    cfg = yaml.safe_load(workflow_config(tmp_path, {"lambda1": [1]}, "f").read_text())
    cfg["demo"]["figures"] = {"epochs": [1, 2], "lambdas": [0.1, 1, 10], "bits": 16}
    path = tmp_path / "fig.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
           str(work), "--configfile", str(path), "--cores", "1", "-n",
           "results/demo_sensitivity.png", "results/demo_epochs.png"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=venv_env(), cwd=ROOT)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "figure: demo_sensitivity: 9 training(s) at 16 bits" in out
    assert "figure: demo_epochs: 1 training(s) at 16 bits" in out
    assert job_counts(out)["figure_point"] == 10 and job_counts(out)["figure"] == 2
