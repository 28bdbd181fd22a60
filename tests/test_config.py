"""The config schema: the shipped configs validate, typos and wrong types name the key."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from pipeline.methods import training_params
from tests.conftest import venv_env

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "schemas" / "config.schema.yaml")


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


@pytest.mark.parametrize("name", ["config.yaml", ".test/config.yaml"])
def test_shipped_configs_validate(name):
    validate(load(name), SCHEMA)


def test_paper_hyper_parameters_per_dataset():
    cfg = load("config.yaml")
    validate(cfg, SCHEMA)  # what the stages see: the schema's defaults filled
    coco, nus = cfg["coco"]["lagnh"], cfg["nuswide"]["lagnh"]
    assert (coco["lambda1"], coco["lambda2"], coco["lambda3"], coco["k"], coco["mu"]) == \
        (100, 1, 1, 1, 1)
    assert (nus["lambda1"], nus["lambda2"], nus["lambda3"]) == (100, 1, 0.1)
    assert (coco["batch_size"], coco["hidden"], nus["batch_size"], nus["hidden"]) == \
        (1024, 1024, 2048, 2048)
    assert coco["lr"] == 1e-4 and coco["epochs"] == 300 and coco["disc_hidden"] == [64, 32]
    assert cfg["coco"]["bits"] == [16, 32, 64, 128]


def test_defaults_are_filled():
    cfg = load("config.yaml")
    cfg["nuswide"]["lagnh"].pop("g_steps", None)
    validate(cfg, SCHEMA)
    assert cfg["nuswide"]["lagnh"]["g_steps"] == 1


@pytest.mark.parametrize("path, value, fragment", [
    (("demo", "lagnh", "lamda1"), 100, "lamda1"),
    (("demo", "lagnh", "lr"), "fast", "fast"),
    (("demo", "eval", "zero_hit"), "ignore", "ignore"),
    (("demo", "split", "protocol"), "kfold", "kfold"),
    (("demo", "bits"), [16, 0], "0"),
])
def test_bad_values_are_named(path, value, fragment):
    cfg = copy.deepcopy(load("config.yaml"))
    node = cfg
    for key in path[:-1]:
        node = node.setdefault(key, {})  # a section left out (defaults) is written in
    node[path[-1]] = value
    with pytest.raises(Exception, match=fragment):
        validate(cfg, SCHEMA)


def test_snakemake_stops_on_a_config_typo(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("demo:\n  lagnh:\n    lamda1: 100\n")
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", str(bad),
                          "--directory", str(tmp_path), "-s", str(ROOT / "Snakefile")],
                         capture_output=True, text=True, cwd=ROOT, env=venv_env())
    assert run.returncode != 0
    assert "lamda1" in run.stdout + run.stderr


def test_test_scenario_replaces_config_yaml(tmp_path):
    """`--configfile .test/config.yaml` is the whole config: run where a config.yaml lies (the
    repository root), it plans exactly the scenario's 4 methods x 2 code lengths, not a merge
    with config.yaml's 8 methods (nor its coco/nuswide sections)."""
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
                          "--directory", str(tmp_path), "--configfile",
                          str(ROOT / ".test" / "config.yaml"), "-n", "results/demo_map.csv"],
                         capture_output=True, text=True, cwd=ROOT, env=venv_env())
    assert run.returncode == 0, run.stderr[-3000:]
    trained = set(re.findall(r"rule train:.*?wildcards: dataset=demo, method=(\w+), bits=(\d+)",
                             run.stdout + run.stderr, re.DOTALL))
    scenario = load(".test/config.yaml")["demo"]
    # a row differing from an earlier one of its method only in encode-time keys trains nothing
    models, own = set(), []
    for name, row in scenario["methods"].items():
        impl = row.get("method", name)
        params = training_params(impl, {k: v for k, v in row.items() if k != "method"})
        if (impl, json.dumps(params, sort_keys=True)) not in models:
            models.add((impl, json.dumps(params, sort_keys=True)))
            own.append(name)
    assert "lagnh_batch" not in own
    assert trained == {(m, str(b)) for m in own for b in scenario["bits"]}
    assert "extended by additional config" not in run.stdout + run.stderr


@pytest.mark.parametrize("methods, fragments", [
    ({"foo": {}}, ["demo.methods.foo", "'foo'", "lagnh, lsh"]),
    ({"lsh": {"epochs": 5}}, ["demo.methods.lsh", "epochs", "block_rows, center"]),
    ({"lagnh_x": {"method": "lagnh", "epoch": 3}}, ["demo.methods.lagnh_x", "epoch",
                                                    "batch_size"]),
])
def test_bad_method_rows_stop_the_workflow_at_start(tmp_path, methods, fragments):
    """Unknown implementations and parameters are refused when Snakemake starts, naming the
    dataset, the row, the key and the valid keys: no job runs (not even a dry run's plan)."""
    cfg = load(".test/config.yaml")
    cfg["demo"]["methods"] = methods
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
                          "--directory", str(tmp_path), "--configfile", str(bad), "-n",
                          "results/demo/split.h5"],
                         capture_output=True, text=True, cwd=ROOT, env=venv_env())
    text = run.stdout + run.stderr
    assert run.returncode != 0 and "Job stats" not in text
    for fragment in fragments:
        assert fragment in text, (fragment, text[-2000:])


def test_check_params_uses_the_method_modules_declaration():
    from pipeline.methods import check_params

    check_params("itq", {"iterations": 3, "block_rows": 10})
    check_params("lagnh", {"epochs": 3})
    with pytest.raises(ValueError, match=r"x\.methods\.r: unknown parameter\(s\) \['bits'\]"):
        check_params("sgh", {"bits": 3}, where="x.methods.r")
    with pytest.raises(ValueError, match="unknown method implementation 'nope'"):
        check_params("nope", {})


def test_lists_protocol_needs_no_instances_file(tmp_path):
    """With split.protocol lists the split reads only the list files: source.instances may be
    absent (it was demanded, and unused)."""
    cfg = load(".test/config.yaml")["demo"]
    lists = {}
    for key in ("train_list", "query_list", "database_list"):
        (tmp_path / f"{key}.txt").write_text("a.jpg 0 1\n")
        lists[key] = str(tmp_path / f"{key}.txt")
    cfg["source"] = {"kind": "coco_format", "images": str(tmp_path)}
    cfg["split"] = {"protocol": "lists", **lists}
    cfg["detector"] = {"kind": "faster_rcnn"}
    path = tmp_path / "lists.yaml"
    path.write_text(yaml.safe_dump({"mine": cfg}))
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
                          "--directory", str(tmp_path), "--configfile", str(path), "-n",
                          "results/mine/split.h5"],
                         capture_output=True, text=True, cwd=ROOT, env=venv_env())
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert re.search(r"^split\s+1\s*$", run.stdout, re.MULTILINE), run.stdout[-2000:]
