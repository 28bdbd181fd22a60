"""The paper's Table 4 from the workflow's own timings: training and encoding seconds per method.

Snakemake writes a benchmark file for every job (``benchmark:`` in ``rules/train.smk`` and
``rules/encode.smk``): a TSV with a header ``s  h:m:s  max_rss  max_vms  max_uss  max_pss
io_in  io_out  mean_load  cpu_time`` and one row per repeat. :func:`read_benchmark` reads one;
:func:`timing_rows` pairs each method row's training and encoding job at one code length;
:func:`timing_markdown` writes the table with a caption saying what the seconds include.

A row that encodes with another row's model (``lagnh_batch`` with ``lagnh``'s) shows that
model's training and says so.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["read_benchmark", "timing_markdown", "timing_rows"]


def _number(value: str) -> float | None:
    """A benchmark cell as float; ``NA``/empty (Snakemake's 'not measured') -> None."""
    value = value.strip()
    if value in ("", "NA", "-"):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def read_benchmark(path: str | Path) -> dict[str, float | None]:
    """One Snakemake benchmark TSV -> ``{"seconds", "cpu_seconds", "max_rss_mb"}``.

    Over repeats (several rows): the median wall-clock and CPU seconds, the largest RSS.

    Raises:
        FileNotFoundError: naming the file and the job that writes it.
        ValueError: naming the file when it has no ``s`` column or no rows.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "b.tsv")
        >>> _ = open(p, "w").write("s\\th:m:s\\tmax_rss\\tcpu_time\\n3.5\\t0:00:03\\t120.5\\t2.0\\n"
        ...                        "4.5\\t0:00:04\\tNA\\t3.0\\n")
        >>> read_benchmark(p)
        {'seconds': 4.0, 'cpu_seconds': 2.5, 'max_rss_mb': 120.5}
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: benchmark file not found; it is written when its job "
                                "runs (rerun that train/encode job, e.g. with --forcerun)")
    with open(p, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows or "s" not in rows[0]:
        raise ValueError(f"{p}: not a Snakemake benchmark file (no rows or no 's' column)")

    def column(name: str) -> list[float]:
        values = [_number(r.get(name) or "") for r in rows]
        return [v for v in values if v is not None]

    seconds, cpu, rss = column("s"), column("cpu_time"), column("max_rss")
    if not seconds:
        raise ValueError(f"{p}: no wall-clock seconds recorded")
    return {"seconds": statistics.median(seconds),
            "cpu_seconds": statistics.median(cpu) if cpu else None,
            "max_rss_mb": max(rss) if rss else None}


def timing_rows(rows: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
    """Read the benchmarks of each method row.

    Args:
        rows: one dict per method row: ``method``, ``train`` and ``encode`` (benchmark paths),
            optionally ``model_of`` (the row whose trained model it encodes with, when not its
            own).

    Returns:
        dicts with ``method``, ``model_of`` (or None), ``train`` and ``encode`` (each
        :func:`read_benchmark`'s dict).
    """
    out = []
    for row in rows:
        for key in ("method", "train", "encode"):
            if key not in row:
                raise ValueError(f"timing row {dict(row)} lacks '{key}'")
        own = row.get("model_of") in (None, row["method"])
        out.append({"method": row["method"], "model_of": None if own else row["model_of"],
                    "train": read_benchmark(row["train"]),
                    "encode": read_benchmark(row["encode"])})
    return out


def _cell(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def timing_markdown(rows: Sequence[Mapping[str, Any]], bits: int, dataset: str | None = None,
                    display: Mapping[str, str] | None = None) -> str:
    """Table 4 as Markdown: caption, then one line per row (the order given).

    Example:
        >>> b = {"seconds": 12.25, "cpu_seconds": 10.0, "max_rss_mb": 300.0}
        >>> print(timing_markdown([{"method": "itq", "model_of": None, "train": b,
        ...                         "encode": b}], 32, "demo", {"itq": "ITQ"}).splitlines()[-1])
        | ITQ | 12.2 | 12.2 | 300 | 300 |
    """
    display = display or {}
    where = f" on {dataset}" if dataset else ""
    lines = [
        f"Training and encoding time at {bits} bits{where} (the paper's Table 4): wall-clock "
        "seconds of the `train` and `encode` jobs from Snakemake's benchmark files "
        "(`logs/benchmarks/{train,encode}/`; median over repeats), with each job's peak "
        "memory. They include starting Python and reading the inputs (a few seconds per job), "
        "and depend on the machine, the threads each job had and the load from jobs run beside "
        "it: compare rows of one run. Encoding covers the query and retrieval images.",
        "",
        "| Method | Training (s) | Encoding (s) | Training peak RSS (MB) "
        "| Encoding peak RSS (MB) |",
        "|---|---:|---:|---:|---:|",
    ]
    shared = []
    for row in rows:
        name = display.get(row["method"], row["method"])
        if row.get("model_of"):
            shared.append(f"{name} encodes with {display.get(row['model_of'], row['model_of'])}"
                          "'s model")
            name += " †"
        t, e = row["train"], row["encode"]
        lines.append(f"| {name} | {_cell(t['seconds'], 1)} | {_cell(e['seconds'], 1)} | "
                     f"{_cell(t['max_rss_mb'], 0)} | {_cell(e['max_rss_mb'], 0)} |")
    if shared:
        lines[0] += " † " + "; ".join(shared) + ": its training time is that model's."
    return "\n".join(lines) + "\n"
