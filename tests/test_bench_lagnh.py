"""benchmarks/bench_lagnh.py: its FLOP count is the one a real step performs, and it runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_lagnh", ROOT / "benchmarks/bench_lagnh.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_lagnh"] = module  # spawned jobs pickle functions by module name
    sys.path.insert(0, str(ROOT / "benchmarks"))  # ... and import it from there (spawn copies it)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_lagnh", None)
    sys.path.remove(str(ROOT / "benchmarks"))


@pytest.mark.parametrize("shape", [(64, 96, 7, 16), (40, 24, 5, 8)])
def test_step_flops_equal_the_counted_flops_of_a_real_step(bench, shape) -> None:
    batch, d, c, bits = shape
    counted = bench.counted_flops(batch, d, c, bits, torch.device("cpu"))
    assert bench.step_flops(batch, d, c, bits) == counted
    # the count follows the layer widths (here narrower than the defaults the counter runs)
    assert bench.step_flops(batch, d, c, bits, d_att=32, hidden=48) != counted


def test_epoch_flops_count_the_short_last_batch(bench) -> None:
    full = bench.step_flops(1024, 4096, 80, 32)
    assert bench.epoch_flops(4096, 1024, 4096, 80, 32) == 4 * full
    epoch = bench.epoch_flops(5000, 1024, 4096, 80, 32)  # 4 x 1,024 + 904
    assert epoch == 4 * full + bench.step_flops(904, 4096, 80, 32) < 5 * full


def test_matmul_floor_replays_exactly_the_steps_matmuls(bench) -> None:
    seconds, flops = bench.matmul_floor(64, 96, 7, 16, torch.device("cpu"), repeats=2)
    assert seconds > 0
    assert flops == bench.step_flops(64, 96, 7, 16)


@pytest.mark.parametrize("jobs", [1, 2])
def test_main_writes_a_table_row(bench, tmp_path: Path, jobs: int) -> None:
    out = tmp_path / "bench.md"
    assert bench.main(["--epochs", "2", "--n-train", "96", "--dim", "64", "--classes", "6",
                       "--bits", "8", "--batch", "48", "--n-encode", "50", "--neighbors", "4",
                       "--threads", "1", "--jobs", str(jobs), "--device", "cpu",
                       "--out", str(out)]) == 0
    text = out.read_text()
    layout = "| 2 × 1 (" if jobs == 2 else "| 1 ("
    assert layout in text and "encode 50: inductive" in text and "matmul-only floor" in text
    row = [line for line in text.splitlines() if line.startswith("| ") and "ms =" in line]
    assert len(row) == 1 and row[0].count("|") == 13
    cells = [c.strip() for c in row[0].split("|")[1:-1]]
    # 96 = 2 x 48: GFLOP/epoch = 2 x GFLOP/step
    assert float(cells[6]) == pytest.approx(2 * float(cells[5].split()[0]), abs=0.011)
    if jobs == 2:
        assert "2 trainings at once, ms/step per job: " in text
    else:  # a second run appends its table; the first stays whole
        bench.main(["--epochs", "1", "--n-train", "48", "--dim", "16", "--classes", "3",
                    "--bits", "4", "--batch", "48", "--n-encode", "10", "--neighbors", "2",
                    "--threads", "1", "--device", "cpu", "--out", str(out)])
        again = out.read_text()
        assert again.startswith(text) and again.count("### LAGNH speed") == 2
        assert not list(tmp_path.glob(".*tmp*"))
