"""The timing table (the paper's Table 4) from fake Snakemake benchmark files, and its rule's
place in the workflow (a dry run of ``.test/config.yaml``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.retrieval.cost_table import read_benchmark, timing_markdown, timing_rows
from pipeline.stages import timing as stage
from tests.conftest import job_counts, venv_env

ROOT = Path(__file__).resolve().parents[1]
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def bench(path: Path, *rows: tuple[float, str, float]) -> Path:
    """A benchmark TSV as Snakemake writes it: (seconds, max_rss, cpu_time) per repeat."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{s}\t0:00:00\t{rss}\t1.0\t1.0\t1.0\t0.1\t0.0\t50.0\t{cpu}\n" for s, rss, cpu in rows]
    path.write_text(HEADER + "".join(lines))
    return path


def test_read_benchmark_median_seconds_and_peak_memory(tmp_path):
    p = bench(tmp_path / "b.tsv", (10.0, "100.5", 8.0), (14.0, "NA", 9.0), (11.0, "90.0", 7.0))
    assert read_benchmark(p) == {"seconds": 11.0, "cpu_seconds": 8.0, "max_rss_mb": 100.5}
    one = bench(tmp_path / "c.tsv", (2.5, "NA", 1.0))
    assert read_benchmark(one)["max_rss_mb"] is None


def test_read_benchmark_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.tsv: benchmark file not found.*rerun"):
        read_benchmark(tmp_path / "nope.tsv")
    bad = tmp_path / "bad.tsv"
    bad.write_text("seconds\n1\n")
    with pytest.raises(ValueError, match=r"bad\.tsv: not a Snakemake benchmark file"):
        read_benchmark(bad)


def test_markdown_rows_values_and_shared_model_note():
    t = {"seconds": 100.04, "cpu_seconds": 1.0, "max_rss_mb": 2048.4}
    e = {"seconds": 3.05, "cpu_seconds": 1.0, "max_rss_mb": None}
    md = timing_markdown([{"method": "lagnh", "model_of": None, "train": t, "encode": e},
                          {"method": "lagnh_batch", "model_of": "lagnh", "train": t,
                           "encode": e}], 32, "demo", {"lagnh": "LAGNH"})
    lines = md.splitlines()
    assert lines[0].startswith("Training and encoding time at 32 bits on demo")
    assert "lagnh_batch encodes with LAGNH's model" in lines[0]
    assert lines[-2] == "| LAGNH | 100.0 | 3.0 | 2048 |  |"  # 3.05 -> 3.0 (binary 3.04999)
    assert lines[-1] == "| lagnh_batch † | 100.0 | 3.0 | 2048 |  |"


def test_stage_writes_the_table_in_table3_order(tmp_path):
    rows = []
    for method, train_s, enc_s in [("lagnh", 300.0, 9.5), ("itq", 4.25, 2.0),
                                   ("tbh", 60.0, 3.0)]:
        rows.append({"method": method, "model_of": method,
                     "train": str(bench(tmp_path / "train" / f"{method}.tsv",
                                        (train_s, "500", 1.0))),
                     "encode": str(bench(tmp_path / "encode" / f"{method}.tsv",
                                         (enc_s, "400", 1.0)))})
    rows.append({**rows[0], "method": "lagnh_batch",
                 "encode": str(bench(tmp_path / "encode" / "b.tsv", (7.0, "450", 1.0)))})
    out = tmp_path / "demo_timing.md"
    assert stage.main(["--rows-json", json.dumps(rows), "--bits", "32", "--out", str(out),
                       "--dataset", "demo"]) == 0
    body = [line for line in out.read_text().splitlines() if line.startswith("| ")][1:]
    assert body == ["| ITQ | 4.2 | 2.0 | 500 | 400 |",  # 4.25 rounds half to even
                    "| TBH | 60.0 | 3.0 | 500 | 400 |",
                    "| LAGNH | 300.0 | 9.5 | 500 | 400 |",
                    "| LAGNH (batch-wise) † | 300.0 | 7.0 | 500 | 450 |"]
    assert timing_rows(rows)[3]["model_of"] == "lagnh"


def test_stage_fails_cleanly_on_a_missing_benchmark(tmp_path, capsys):
    rows = [{"method": "itq", "train": str(tmp_path / "t.tsv"), "encode": str(tmp_path / "e")}]
    out = tmp_path / "x.md"
    assert stage.main(["--rows-json", json.dumps(rows), "--bits", "32", "--out", str(out)]) == 2
    assert "t.tsv: benchmark file not found" in capsys.readouterr().err
    assert not out.exists()


def test_rule_times_every_row_at_the_configured_bits(tmp_path):
    cfg = tmp_path / "timing.yaml"
    cfg.write_text(yaml.safe_dump({"demo": {"timing": {"bits": 16}}}))
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-n",
         "results/demo_timing.md", "--directory", str(tmp_path / "work"),
         "--configfile", str(ROOT / ".test" / "config.yaml"), str(cfg)],
        capture_output=True, text=True, env=venv_env(), cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    counts = job_counts(run.stdout)
    # 7 rows at 16 bits only; lagnh_batch encodes with lagnh's model: 6 trainings
    assert counts["train"] == 6 and counts["encode"] == 7 and counts["timing"] == 1
    assert "logs/benchmarks/train/demo_lagnh_16.tsv" in run.stdout
    assert "_32.tsv" not in run.stdout
