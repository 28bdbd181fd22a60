"""The Snakemake workflow end to end on the small offline scenario, and its caching.

One run of ``.test/config.yaml`` (the demo chain on 600 images) in a temporary working folder;
then dry runs prove what a change reruns: nothing after a finished run, only training and what
follows it after a changed learning rate, only the thresholding step (not the detector) after a
changed threshold, features and everything downstream after a changed backbone.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.artifacts import read_attrs
from tests.conftest import job_counts, venv_env

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / ".test" / "config.yaml"
pytestmark = pytest.mark.slow

UPSTREAM = {"demo_images", "cell_classifier", "split", "features", "detect", "auxiliary"}
DOWNSTREAM_OF_TRAIN = {"train", "encode", "evaluate", "history_plot", "gallery", "curves",
                       "table", "report"}


def snakemake(workdir: Path, *args: str, configs: tuple[Path, ...] = (),
              check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
           str(workdir), "--configfile", str(SCENARIO), *map(str, configs), *args]
    run = subprocess.run(cmd, capture_output=True, text=True, env=venv_env(), cwd=ROOT)
    if check and run.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in
                         sorted((workdir / "logs").rglob("*.log"))[-5:]) \
            if (workdir / "logs").exists() else ""
        raise AssertionError(f"snakemake failed:\n{run.stdout[-4000:]}\n{run.stderr[-6000:]}"
                             f"\n{logs}")
    return run


def planned(workdir: Path, configs: tuple[Path, ...] = (),
            target: str = "results/demo_map.csv") -> dict[str, int]:
    """Rule → number of jobs a dry run would execute (empty when nothing is to be done)."""
    run = snakemake(workdir, "-n", target, configs=configs)
    return job_counts(run.stdout + run.stderr)


def override(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A working folder in which `snakemake results/demo_map.csv` has completed."""
    work = tmp_path_factory.mktemp("demo_run")
    snakemake(work, "--cores", "2", "results/demo_map.csv")
    return work


def test_chain_produces_table_plots_and_artifacts(finished):
    table = pd.read_csv(finished / "results" / "demo_map.csv")
    assert list(table["method"]) == ["random", "lsh", "itq", "aux", "aux_itq", "lagnh",
                                     "lagnh_batch", "float"]
    assert {"16 bits", "32 bits"} <= set(table.columns)
    values = table.set_index("method")[["16 bits", "32 bits"]]
    assert ((values >= 0) & (values <= 1)).all().all()
    # every hashing method must beat random codes on the same split
    for method in ("lsh", "itq", "aux", "aux_itq", "lagnh", "lagnh_batch"):
        assert (values.loc[method] > values.loc["random"]).all(), table
    for name in ("demo_topk_precision.png", "demo_pr.png", "demo_gallery_16.png",
                 "demo_table.md", "demo_topk_precision.csv"):
        assert (finished / "results" / name).stat().st_size > 0
    for rule in ("features", "train", "evaluate"):
        assert any((finished / "logs" / rule).iterdir())
        assert any((finished / "logs" / "benchmarks" / rule).iterdir())
    assert not list((finished / "results").rglob(".*.tmp*"))  # no temp files left
    codes = read_attrs(finished / "results" / "demo" / "codes" / "lagnh_16.h5")
    assert codes["protocol"] == "random" and codes["stage"] == "codes"


def test_second_run_does_nothing(finished):
    assert planned(finished) == {}


def test_changed_lr_reruns_only_training_and_downstream(finished, tmp_path):
    cfg = override(tmp_path, "lr", {"demo": {"lagnh": {"lr": 3e-4}}})
    jobs = planned(finished, (cfg,))
    assert set(jobs) <= DOWNSTREAM_OF_TRAIN and not set(jobs) & UPSTREAM
    assert jobs["train"] == 2  # LAGNH at 16 and 32 bits; the baselines are untouched
    assert jobs["report"] == 1


def test_reference_rows_and_the_batch_independent_default(finished):
    """aux and aux_itq appear in the table with their caption; lagnh_batch encodes with
    lagnh's model (one training per bit length); the table marks the rows that read aux."""
    text = (finished / "results" / "demo_table.md").read_text()
    assert "| Aux labels as code |" in text and "| Aux bits + ITQ |" in text
    assert "Rows that read the detector's auxiliary labels: Aux labels as code, Aux bits + " \
        "ITQ, LAGNH, LAGNH (batch-wise)." in text
    assert "chosen on a validation split of the training images: k=" in text
    models = finished / "results" / "demo" / "models"
    assert not list(models.glob("lagnh_batch_*"))
    lagnh = read_attrs(finished / "results" / "demo" / "codes" / "lagnh_16.h5")
    batch = read_attrs(finished / "results" / "demo" / "codes" / "lagnh_batch_16.h5")
    assert lagnh["model_file"] == batch["model_file"] == "results/demo/models/lagnh_16.pt"
    assert lagnh["params"]["encode_mode"] == "inductive"
    assert batch["params"]["encode_mode"] == "batch"
    aux = read_attrs(finished / "results" / "demo" / "codes" / "aux_16.h5")
    assert aux["code_bits"] == 10 and aux["uses_aux"] is True
    for rule in ("curves", "gallery"):
        assert any((finished / "logs" / rule).iterdir())
    pk = pd.read_csv(finished / "results" / "demo_topk_precision.csv")
    assert {"aux", "aux_itq", "lagnh_batch"} <= set(pk["method"])


def test_changed_encoding_reencodes_without_training(finished, tmp_path):
    cfg = override(tmp_path, "enc", {"demo": {"lagnh": {"encode_neighbors": 20}}})
    jobs = planned(finished, (cfg,))
    assert "train" not in jobs and not set(jobs) & UPSTREAM
    assert jobs["encode"] == 4  # lagnh and lagnh_batch (its parameters changed too) x 2 bits
    cfg = override(tmp_path, "enc2", {"demo": {"methods": {
        "random": {}, "lsh": {}, "itq": {}, "aux": {}, "aux_itq": {}, "lagnh": {},
        "lagnh_batch": {"method": "lagnh", "encode_mode": "batch", "encode_batch_size": 64}}}})
    jobs = planned(finished, (cfg,))
    assert "train" not in jobs and jobs["encode"] == 2


def test_changed_threshold_reruns_thresholding_not_detector(finished, tmp_path):
    cfg = override(tmp_path, "thr", {"demo": {"auxiliary": {"threshold": 0.6}}})
    jobs = planned(finished, (cfg,))
    assert jobs["auxiliary"] == 1
    assert not set(jobs) & {"detect", "features", "split", "cell_classifier", "demo_images"}
    assert jobs["train"] == 12  # every method reads aux.h5 (baselines ignore its content)


def test_changed_backbone_reruns_features_and_downstream(finished, tmp_path):
    cfg = override(tmp_path, "bb", {"demo": {"features": {"image_size": 80}}})
    jobs = planned(finished, (cfg,))
    assert jobs["features"] == 1 and jobs["evaluate_float"] == 1
    assert not set(jobs) & {"detect", "split", "cell_classifier", "demo_images", "auxiliary"}


def test_deleted_intermediate_reruns_only_dependents(finished, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(finished, work, symlinks=True)
    (work / "results" / "demo" / "aux.h5").unlink()
    # Snakemake rebuilds a missing intermediate when it is asked for (or needed) ...
    run = snakemake(work, "--cores", "1", "results/demo/aux.h5")
    assert "auxiliary" in run.stderr and "rule detect" not in run.stderr
    # ... and then reruns exactly what depends on it
    jobs = planned(work)
    assert jobs["train"] == 12 and jobs["report"] == 1
    assert not set(jobs) & {"detect", "features", "split", "cell_classifier", "demo_images",
                            "auxiliary", "evaluate_float"}


def test_interrupted_job_leaves_nothing_trusted(finished, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(finished, work, symlinks=True)
    (work / "results" / "demo" / "features.h5").unlink()
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
           str(work), "--configfile", str(SCENARIO), "--cores", "1",
           "results/demo/features.h5"]
    proc = subprocess.Popen(cmd, env=venv_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    log = work / "logs" / "features" / "demo.log"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and "features:" in log.read_text()):
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (work / "results" / "demo" / "features.h5").exists()
    assert not list((work / "results" / "demo").glob(".features.h5*tmp*"))
    run = snakemake(work, "-n", "results/demo/features.h5")
    assert re.search(r"^features\s+1\s*$", run.stdout, re.MULTILINE), run.stdout


def test_dag_of_the_paper_experiment():
    """COCO's DAG: 3 archives downloaded and extracted, then one job per stage; config.yaml's
    14 rows x 4 bit lengths encoded and evaluated, 13 x 4 trained (``lagnh_batch`` encodes with
    ``lagnh``'s model: the two rows differ only in encode-time keys)."""
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
                          "-n", "results/coco_map.csv"], capture_output=True, text=True,
                         env=venv_env(), cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    counts = job_counts(run.stdout)
    for rule, count in (("download", 3), ("extract", 3), ("split", 1), ("features", 1),
                        ("detect", 1), ("auxiliary", 1), ("train", 52), ("encode", 56),
                        ("evaluate", 56), ("table", 1), ("report", 1)):
        assert counts.get(rule) == count, (rule, counts)
    batch_encode = re.search(r"rule encode:\n(?:.*\n)*?.*output: results/coco/codes/"
                             r"lagnh_batch_32\.h5", run.stdout)
    assert batch_encode, "no encode job for lagnh_batch"
    job = run.stdout[batch_encode.start():batch_encode.end()]
    assert "input: results/coco/models/lagnh_32.pt" in job
    assert "results/coco/models/lagnh_batch_32.pt" not in run.stdout
