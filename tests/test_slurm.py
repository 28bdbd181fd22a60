"""The workflow beyond one machine: per-rule resources, the profiles, a real SLURM run, the report.

The ``slurm`` tests start a single-node SLURM cluster on this machine (tests/slurm/cluster.py:
munged, slurmctld and slurmd as child processes, stopped by pid at the end), run the offline demo
of ``.test/config.yaml`` with ``--workflow-profile profiles/slurm`` (every job through sbatch and
srun), and then check what the scheduler saw and the HTML report built from that run. The node
pretends to have two GPUs and the scenario's ``device`` is set to ``auto``, so the GPU stages
ask for one (``--gpus=1``) while still computing on the CPU. They skip, saying why, without root,
without Debian's SLURM and munge (``bash scripts/slurm_local.sh``), without the ``cluster`` extra,
or where the daemons do not come up. The run happens once per test session, also under
pytest-xdist (the first worker runs it, the others read its results).
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import venv_env
from tests.slurm.cluster import LocalSlurm, SlurmUnavailable, missing_programs

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / ".test" / "config.yaml"
RUN_TIMEOUT = 900  # seconds for the whole SLURM run (about 4 minutes on 2 cores)
GPU_RULES = {"features", "detect", "train", "encode"}
QUERY_FORMAT = "JobID:|,Name:|,State:|,tres-per-job:|,Comment:|"


def dry_run(*args: str, configs: tuple[Path, ...] = ()) -> str:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-n",
           *(["--configfile", *map(str, configs)] if configs else []), *args]
    run = subprocess.run(cmd, capture_output=True, text=True, env=venv_env(), cwd=ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout + run.stderr


def job_resources(text: str) -> dict[str, dict[str, str]]:
    """Rule -> resources of its first job in a dry run's listing."""
    found: dict[str, dict[str, str]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        m = re.match(r"(?:local)?rule (\w+):", block)
        res = re.search(r"^\s+resources: (.*)$", block, re.MULTILINE)
        if m and res and m.group(1) not in found:
            found[m.group(1)] = dict(item.split("=", 1) for item in res.group(1).split(", "))
    return found


# -- resources and profiles (dry runs, seconds) ------------------------------------------------
def test_resources_are_fixed_per_rule(tmp_path):
    small = job_resources(dry_run("--directory", str(tmp_path), "results/demo_map.csv",
                                  configs=(SCENARIO,)))
    coco = job_resources(dry_run("results/coco_map.csv"))
    for rule in ("split", "features", "detect", "auxiliary", "train", "encode", "evaluate",
                 "evaluate_float", "report"):
        for res in ("mem_mb", "runtime"):
            assert int(small[rule][res]) > 0, (rule, small[rule])
            assert small[rule][res] == coco[rule][res], (rule, res)  # profiles override
    # the GPU stages ask for a GPU unless the dataset is pinned to the CPU (.test: cpu)
    for rule in GPU_RULES:
        assert small[rule].get("gpu", "0") == "0", (rule, small[rule])
    assert coco["features"].get("gpu") == "1" and coco["evaluate"].get("gpu", "0") == "0"
    # every job fits the test cluster's node (24 GB machine) on its first try
    assert max(int(r["mem_mb"]) for r in small.values() if "mem_mb" in r) <= 8000


def test_profiles_are_valid_yaml_with_documented_keys():
    default = yaml.safe_load((ROOT / "profiles" / "default" / "config.yaml").read_text())
    slurm = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    assert default["rerun-incomplete"] is True and default["cores"] == "all"
    assert default["resources"] == ["gpu=1"]  # one job on the local GPU at a time
    assert slurm["executor"] == "slurm" and int(slurm["jobs"]) >= 1
    assert {"runtime", "mem_mb"} <= set(slurm["default-resources"])
    # the SLURM workflow profile replaces the default one: it repeats the shared keys, not the
    # local GPU limit
    shared = {"rerun-incomplete", "printshellcmds", "show-failed-logs", "keep-going",
              "latency-wait"}
    assert all(slurm[k] == default[k] for k in shared)
    assert "resources" not in slurm and "cores" not in slurm


@pytest.mark.skipif(importlib.util.find_spec("snakemake_executor_plugin_slurm") is None,
                    reason="snakemake-executor-plugin-slurm not installed: "
                           "pip install -e '.[cluster]'")
def test_slurm_profile_dry_run_of_the_paper_experiment():
    text = dry_run("--workflow-profile", str(ROOT / "profiles" / "slurm"),
                   "results/coco_map.csv")
    assert "workflow specific profile" in text and "profiles/slurm" in text
    assert re.search(r"^train\s+52\s*$", text, re.MULTILINE), text[-2000:]  # 13 rows x 4


# -- one real SLURM run per session -------------------------------------------------------------
def skip_reason() -> str:
    if os.geteuid() != 0:
        return "needs root: the test cluster runs its daemons as root"
    missing = missing_programs()
    if missing:
        return ("Debian's SLURM/munge not installed (bash scripts/slurm_local.sh as root): "
                "missing " + ", ".join(missing))
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm not installed: pip install -e '.[cluster]'"
    return ""


def run_on_slurm(folder: Path) -> dict:
    """Start the cluster, run the demo through it, record what squeue and sacct saw, stop."""
    reason = skip_reason()
    if reason:
        return {"skip": reason}
    work = folder / "work"
    work.mkdir()
    override = folder / "device_auto.yaml"
    override.write_text(yaml.safe_dump({"demo": {"device": "auto"}}))
    cluster = LocalSlurm(folder / "cluster", gpus=2)
    try:
        cluster.start()
    except SlurmUnavailable as err:
        return {"skip": f"the local SLURM cluster did not start: {str(err)[-1500:]}"}
    try:
        env = cluster.env()
        env["PATH"] = venv_env()["PATH"]  # jobs inherit it (sbatch --export=ALL)
        cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
               "--directory", str(work), "--configfile", str(SCENARIO), str(override),
               "--workflow-profile", str(ROOT / "profiles" / "slurm"),
               # no slurmdbd here: squeue answers (finished jobs stay for MinJobAge)
               "--slurm-status-command", "squeue",
               "--slurm-init-seconds-before-status-checks", "1",
               # one CPU per job, so the 2-CPU node runs two jobs at a time
               "--max-threads", "1",
               "results/demo_map.csv"]
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT,
                                 timeout=RUN_TIMEOUT)
            rc, out, err = run.returncode, run.stdout, run.stderr
        except subprocess.TimeoutExpired as exc:
            rc, out, err = -1, str(exc.stdout or ""), f"timed out after {RUN_TIMEOUT} s\n" + \
                str(exc.stderr or "")
        run_id = re.search(r"SLURM run ID: (\S+)", out + err)
        run_id = run_id.group(1) if run_id else ""
        squeue = subprocess.run(["squeue", "--states=all", "--noheader", "--name", run_id,
                                 "-O", QUERY_FORMAT], capture_output=True, text=True, env=env)
        sacct = subprocess.run(["sacct", "--completion", "--allocations", "--parsable2",
                                "--noheader", "--format=JobIdRaw,JobName,State"],
                               capture_output=True, text=True, env=env)
        return {"rc": rc, "stdout": out, "stderr": err, "run_id": run_id,
                "work": str(work), "squeue": squeue.stdout, "squeue_err": squeue.stderr,
                "sacct": sacct.stdout, "sacct_err": sacct.stderr,
                "cluster_logs": cluster.logs() if rc != 0 else ""}
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def slurm_run(tmp_path_factory, worker_id) -> dict:
    """The SLURM run's record (see run_on_slurm); computed by whichever xdist worker gets here
    first, under a lock, and read back by the others."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if worker_id != "master" else base
    with open(shared / "slurm_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record_file = shared / "slurm_run.json"
        if record_file.exists():
            record = json.loads(record_file.read_text())
        else:
            folder = shared / "slurm_run"
            folder.mkdir()
            record = run_on_slurm(folder)
            record_file.write_text(json.dumps(record))
    if "skip" in record:
        pytest.skip(record["skip"])
    return record


@pytest.fixture(scope="session")
def slurm_done(slurm_run) -> dict:
    """The record of a SLURM run that succeeded (fails with its output otherwise)."""
    if slurm_run["rc"] != 0:
        work = Path(slurm_run["work"])
        logs = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-2000:]}"
                         for p in sorted(work.rglob("*.log"))[-6:])
        pytest.fail(f"snakemake --workflow-profile profiles/slurm failed (rc {slurm_run['rc']}):\n"
                    f"{slurm_run['stderr'][-6000:]}\n{logs}\n{slurm_run['cluster_logs']}")
    return slurm_run


def planned_jobs(record: dict) -> int:
    """The 'total' of the run's 'Job stats' table."""
    stats = (record["stdout"] + record["stderr"]).split("Job stats:", 1)[1]
    return int(re.search(r"^total\s+(\d+)\s*$", stats, re.MULTILINE).group(1))


def scheduler_jobs(record: dict) -> list[dict[str, str]]:
    rows = [line.split("|") for line in record["squeue"].splitlines() if line.strip()]
    return [{"id": r[0], "name": r[1], "state": r[2], "tres": r[3], "comment": r[4]}
            for r in rows]


def submitted_ids(record: dict) -> dict[str, str]:
    """SLURM job id -> rule, from Snakemake's 'submitted with SLURM jobid N (log: ...)'."""
    text = record["stdout"] + record["stderr"]
    return {m.group(1): m.group(2) for m in re.finditer(
        r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/", text)}


@pytest.mark.slurm
@pytest.mark.slow
def test_demo_map_is_computed_through_slurm(slurm_done):
    table = pd.read_csv(Path(slurm_done["work"]) / "results" / "demo_map.csv")
    assert list(table["method"]) == ["random", "lsh", "itq", "aux", "aux_itq", "lagnh",
                                     "lagnh_batch", "float"]
    values = table.set_index("method")[["16 bits", "32 bits"]]
    assert ((values > 0) & (values <= 1)).all().all(), table
    text = slurm_done["stdout"] + slurm_done["stderr"]
    total = planned_jobs(slurm_done)
    assert f"{total} of {total} steps (100%) done" in text, text[-3000:]
    # every job ran as a SLURM job, none on the submitting host
    assert "localrule" not in text


@pytest.mark.slurm
@pytest.mark.slow
def test_scheduler_saw_every_job(slurm_done):
    submitted = submitted_ids(slurm_done)
    assert len(submitted) == planned_jobs(slurm_done), sorted(submitted.values())
    jobs = {j["id"]: j for j in scheduler_jobs(slurm_done)}
    assert set(jobs) == set(submitted), (slurm_done["squeue"], slurm_done["squeue_err"])
    assert {j["state"] for j in jobs.values()} == {"COMPLETED"}, slurm_done["squeue"]
    assert {j["name"] for j in jobs.values()} == {slurm_done["run_id"]}
    for job_id, rule in submitted.items():  # the plugin tags each job with its rule
        assert jobs[job_id]["comment"].startswith(f"rule_{rule}"), jobs[job_id]
    # the job-completion log (sacct --completion) has them as well
    completed = {line.split("|")[0]: line.split("|")[2]
                 for line in slurm_done["sacct"].splitlines() if line.count("|") == 2}
    assert all(completed.get(i) == "COMPLETED" for i in submitted), (
        slurm_done["sacct"], slurm_done["sacct_err"])


@pytest.mark.slurm
@pytest.mark.slow
def test_gpu_stages_asked_slurm_for_a_gpu(slurm_done):
    submitted = submitted_ids(slurm_done)
    jobs = {j["id"]: j for j in scheduler_jobs(slurm_done)}
    by_rule: dict[str, set[str]] = {}
    for job_id, rule in submitted.items():
        by_rule.setdefault(rule, set()).add(jobs[job_id]["tres"])
    assert set(by_rule) >= GPU_RULES | {"split", "evaluate", "report"}
    # features always; train and encode only for LAGNH (the numpy baselines ask for none); the
    # demo's cell classifier (detect) runs without one
    assert by_rule["features"] == {"gres:gpu:1"}
    for rule in ("train", "encode"):
        assert "gres:gpu:1" in by_rule[rule], (rule, by_rule[rule])
        assert any("gpu" not in t for t in by_rule[rule]), (rule, by_rule[rule])
    for rule, tres in by_rule.items():
        if rule not in GPU_RULES - {"detect"}:
            assert not any("gpu" in t for t in tres), (rule, tres)


@pytest.mark.slurm
@pytest.mark.slow
def test_report_holds_the_map_table_and_the_plots(slurm_done, tmp_path):
    work = Path(slurm_done["work"])
    html = tmp_path / "report.html"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
           str(work), "--configfile", str(SCENARIO), str(work.parent / "device_auto.yaml"),
           "--report", str(html), "results/demo_map.csv"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=venv_env(), cwd=ROOT)
    assert run.returncode == 0, run.stderr[-4000:]
    text = html.read_text()
    results = json.loads(re.search(r"var results = (\{.*?\});\s*</script>", text, re.S)[1])
    categories = json.loads(re.search(r"var categories = (\{.*?\});\s*</script>", text,
                                      re.S)[1])
    assert set(categories) == {"Evaluation", "Plots", "Training"}, categories
    assert set(categories["Plots"]) == {"Retrieval curves", "Retrieval galleries"}
    table = results["results/demo_map.csv"]
    assert table["mime_type"] == "text/csv" and table["labels"]["dataset"] == "demo"
    assert "Mean average precision" in table["caption"] and "K = 100" in table["caption"]
    figures = ["results/demo_topk_precision.png", "results/demo_pr.png",
               "results/demo_gallery_16.png", "results/demo_gallery_32.png",
               "results/demo/models/lagnh_16_history.png"]
    for name in figures:
        assert results[name]["mime_type"] == "image/png", name
        assert results[name]["data_uri"].startswith("data:image/png"), name
    for entry in results.values():  # every caption rendered, its template filled in
        assert entry["caption"].strip() and "{{" not in entry["caption"], entry["name"]
