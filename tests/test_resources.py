"""Scheduler resources in the DAG of the paper's experiment: a GPU only for the jobs that use
one, memory and runtime fixed per rule and scaled by the attempt."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import venv_env

ROOT = Path(__file__).resolve().parents[1]
# lagnh_batch encodes with lagnh's model: it has no train job of its own
GPU_JOBS = {"features", "detect", ("train", "lagnh"), ("encode", "lagnh"),
            ("encode", "lagnh_batch")}


def jobs_of(*args: str) -> list[dict[str, str]]:
    """Rule, wildcards and resources of every job a dry run plans."""
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
                          "-n", *args], capture_output=True, text=True, env=venv_env(),
                         cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = []
    for block in re.split(r"\n(?=rule \w+:\n)", run.stdout):
        head = re.match(r"rule (\w+):", block)
        if not head:
            continue
        res = re.search(r"^\s+resources: (.*)$", block, re.MULTILINE)
        wc = re.search(r"^\s+wildcards: (.*)$", block, re.MULTILINE)
        jobs.append({"rule": head.group(1), "wildcards": wc.group(1) if wc else "",
                     "resources": res.group(1) if res else ""})
    return jobs


def gpus(job: dict[str, str]) -> int:
    m = re.search(r"\bgpu=(\d+)", job["resources"])
    return int(m.group(1)) if m else 0


def method(job: dict[str, str]) -> str | None:
    m = re.search(r"method=(\w+)", job["wildcards"])
    return m.group(1) if m else None


@pytest.mark.parametrize("profile", ["local", "slurm"])
def test_gpu_only_where_one_is_used(profile: str) -> None:
    args = ["results/coco_map.csv"]
    if profile == "slurm":
        if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
            pytest.skip("snakemake-executor-plugin-slurm not installed (scripts/slurm_local.sh)")
        args = ["--profile", "profiles/slurm", *args]
    jobs = jobs_of(*args)
    asking = {(j["rule"], method(j)) if method(j) else j["rule"] for j in jobs if gpus(j)}
    assert asking == GPU_JOBS
    numpy_train = [j for j in jobs if j["rule"] == "train" and method(j) == "itq"]
    assert numpy_train and all(gpus(j) == 0 for j in numpy_train)
    assert all("mem_mb=" in j["resources"] and "runtime=" in j["resources"] for j in jobs)


def test_cpu_dataset_asks_for_no_gpu() -> None:
    jobs = jobs_of("results/demo_map.csv", "--forceall", "--config", "demo={device: cpu}")
    assert {"features", "train", "encode"} <= {j["rule"] for j in jobs}
    assert jobs and not [j for j in jobs if gpus(j)]


def test_the_table_does_not_wait_on_the_figures() -> None:
    """The Markdown MAP table needs only the evaluations; the MAP CSV also brings the figures."""
    table = {j["rule"] for j in jobs_of("results/coco_table.md")}
    assert "table" in table and not table & {"curves", "gallery", "history_plot", "report"}
    everything = {j["rule"] for j in jobs_of("results/coco_map.csv")}
    assert {"table", "report", "curves", "gallery", "history_plot"} <= everything
