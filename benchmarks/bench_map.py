"""Benchmark: exact MAP@1000 of Hamming ranking at the paper's COCO scale, against FAISS.

``.venv/bin/python benchmarks/bench_map.py [--queries 5000] [--db 113287] [--bits 32 64]
[--repeats 3] [--threads N] [--out benchmarks/results/bench_map.md]``

Random codes (5,000 queries x 113,287 database items, as the paper's COCO protocol) and random
multi-hot labels (80 classes, 1-3 per image). For each code length it times, in the same run:

* ``ours``: the whole :func:`pipeline.retrieval.metrics.mean_average_precision` at K = 1000 (Hamming
  distances, exact stable top-1000, relevance, AP), CPU numpy path;
* ``faiss``: ``faiss.IndexBinaryFlat.search(q, 1000)`` alone (no relevance, no AP), with its
  default heap selection and with ``use_heap = False``.

Each figure is the median of ``--repeats`` runs after one warm-up run (``time.perf_counter``).
The script also checks that FAISS's top-1000 distances equal ours and reports whether its
indices are identical too (FAISS does not document its tie order). ``faiss-cpu`` is an optional
benchmark extra (``pip install faiss-cpu``); without it only our timings are shown.
Machines are shared: the load average (``os.getloadavg``) is recorded before and after.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import cpu_name  # noqa: E402  (benchmarks/machine.py)

from pipeline.artifacts import atomic_path  # noqa: E402
from pipeline.retrieval.hamming import default_threads, hamming_topk  # noqa: E402
from pipeline.retrieval.metrics import mean_average_precision  # noqa: E402


def random_labels(rng: np.random.Generator, n: int, n_classes: int) -> np.ndarray:
    """Multi-hot labels with 1-3 distinct classes per image."""
    labels = np.zeros((n, n_classes), np.uint8)
    n_per = rng.integers(1, 4, n)
    for j in range(3):
        rows = np.flatnonzero(n_per > j)
        labels[rows, rng.integers(0, n_classes, len(rows))] = 1
    return labels


def timed(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--queries", type=int, default=5000)
    p.add_argument("--db", type=int, default=113287)
    p.add_argument("--bits", type=int, nargs="+", default=[32, 64])
    p.add_argument("--classes", type=int, default=80)
    p.add_argument("--topk", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="default: all usable cores")
    p.add_argument("--out", default="benchmarks/results/bench_map.md")
    a = p.parse_args(argv)
    threads = a.threads or default_threads()
    try:
        import faiss
    except ImportError:
        faiss = None
        print("faiss not installed (pip install faiss-cpu): timing ours only", file=sys.stderr)
    if faiss is not None:
        faiss.omp_set_num_threads(threads)

    rng = np.random.default_rng(0)
    q_labels = random_labels(rng, a.queries, a.classes)
    db_labels = random_labels(rng, a.db, a.classes)
    load_before = os.getloadavg()
    rows = []
    for bits in a.bits:
        q = rng.integers(0, 256, (a.queries, bits // 8), dtype=np.uint8)
        db = rng.integers(0, 256, (a.db, bits // 8), dtype=np.uint8)
        t_ours, res = timed(lambda q=q, db=db: mean_average_precision(
            q, db, q_labels, db_labels, topk=a.topk, threads=threads, device="numpy"), a.repeats)
        row = {"bits": bits, "ours": t_ours, "map": res.map}
        print(f"{bits} bits: ours MAP@{a.topk} {t_ours:.3f} s (MAP {res.map:.5f})",
              file=sys.stderr)
        if faiss is not None:
            index = faiss.IndexBinaryFlat(bits)
            index.add(db)
            for heap in (True, False):
                index.use_heap = heap
                t_f, (dist, idx) = timed(lambda index=index, q=q: index.search(q, a.topk),
                                         a.repeats)
                row["faiss_heap" if heap else "faiss_noheap"] = t_f
                print(f"{bits} bits: faiss search use_heap={heap} {t_f:.3f} s", file=sys.stderr)
            our_idx, our_dist = hamming_topk(q, db, a.topk, threads=threads, device="numpy")
            row["same_dist"] = bool(np.array_equal(our_dist, dist))
            row["same_idx"] = bool(np.array_equal(our_idx, idx))
        rows.append(row)
    load_after = os.getloadavg()

    def fmt_load(x: tuple[float, float, float]) -> str:
        return " / ".join(f"{v:.2f}" for v in x)

    lines = [
        f"MAP@{a.topk}, {a.queries:,} queries x {a.db:,} random codes, {a.classes} classes "
        f"(1-3 labels per image); median of {a.repeats} after a warm-up.",
        "",
        f"- device: {cpu_name()} ({os.cpu_count()} CPUs), CPU path (numpy "
        f"{np.__version__}" + (f", faiss {faiss.__version__}" if faiss is not None else "") + ")",
        f"- threads: {threads}",
        f"- load average (1/5/15 min) before: {fmt_load(load_before)}, "
        f"after: {fmt_load(load_after)}",
        f"- date: {_dt.date.today().isoformat()}, Python {platform.python_version()}",
        "",
    ]
    if faiss is not None:
        lines += ["| bits | ours: whole MAP@1000 (s) | FAISS search, heap (s) | "
                  "FAISS search, no heap (s) | ours / FAISS heap | ours / FAISS no heap | "
                  "same top-1000 distances / indices |",
                  "|---:|---:|---:|---:|---:|---:|---|"]
        for r in rows:
            lines.append(
                f"| {r['bits']} | {r['ours']:.3f} | {r['faiss_heap']:.3f} | "
                f"{r['faiss_noheap']:.3f} | {r['ours'] / r['faiss_heap']:.2f} | "
                f"{r['ours'] / r['faiss_noheap']:.2f} | "
                f"{'yes' if r['same_dist'] else 'NO'} / {'yes' if r['same_idx'] else 'no'} |")
    else:
        lines += ["| bits | ours: whole MAP@1000 (s) |", "|---:|---:|"]
        lines += [f"| {r['bits']} | {r['ours']:.3f} |" for r in rows]
    table = "\n".join(lines) + "\n"
    print(table)
    if a.out:
        with atomic_path(a.out) as tmp:
            tmp.write_text(table)
        print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
