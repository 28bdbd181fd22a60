"""Benchmark: latency of ``python -m pipeline search --image`` per query image, by step, and the
Hamming search itself at the paper's COCO database size.

``.venv/bin/python benchmarks/bench_search.py [--dataset demo --bits 64 --method lagnh]
[--images 20] [--db 113287] [--search-bits 16 32 64 128] [--queries 200] [--threads 2]
[--out benchmarks/results/bench_search.md]``

Part 1 (needs the dataset's cached artifacts, e.g. ``snakemake --cores 2
results/demo/codes/lagnh_64.h5``; skipped with a note otherwise): ``--images`` retrieval images
of the dataset, each hashed alone as a new image, through the library functions the search
command runs (:mod:`pipeline.retrieval.new_images`): features (the dataset's backbone, built
once), detector (the dataset's detector and the auxiliary thresholding), encode (the trained
model, loaded once), search (Hamming top-20 over the retrieval codes). Median per image and step;
the one-time costs (building the backbone, loading the model) are reported apart.

Part 2: ``--queries`` single-query searches (:func:`pipeline.retrieval.new_images.rank`, top-20,
the evaluation's stable tie order) over ``--db`` random synthetic codes per code length; median
and 95th percentile per query. Target (issue #17): at most 5 ms per query at 113,287 codes for
16..128 bits. Times: ``time.perf_counter``; machines are shared, so the load average is recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import cpu_name  # noqa: E402  (benchmarks/machine.py)

from pipeline.artifacts import atomic_path  # noqa: E402
from pipeline.retrieval.new_images import Database, rank  # noqa: E402


def search_latency(n_db: int, bits: int, queries: int, seed: int = 0) -> tuple[float, float]:
    """Median and 95th percentile (ms) of one-query top-20 searches over ``n_db`` codes."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n_db, bits // 8), dtype=np.uint8)
    db = Database(codes, np.arange(n_db), [f"{i}.jpg" for i in range(n_db)],
                  ["retrieval"] * n_db)
    q = rng.integers(0, 256, (queries + 1, bits // 8), dtype=np.uint8)
    rank(q[:1], db, 20)  # warm-up
    times = []
    for i in range(1, queries + 1):
        t0 = time.perf_counter()
        rank(q[i:i + 1], db, 20)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), float(np.percentile(times, 95))


def pipeline_latency(dataset: str, bits: int, method: str, n_images: int,
                     configfile: str) -> tuple[dict[str, float], dict[str, float], int]:
    """Median seconds per image and step, one-time seconds, and the database size."""
    from pipeline.artifacts import read_h5
    from pipeline.backbones import build_backbone, features_of
    from pipeline.codes import pack_codes
    from pipeline.retrieval.new_images import (
        DatasetFiles,
        aux_from_detections,
        check_aux_settings,
        detector_config,
        load_config,
        load_database,
        load_encoder,
        run_detector,
    )
    from pipeline.schema import fill

    ds = load_config([configfile], dataset)
    files = DatasetFiles(dataset)
    once: dict[str, float] = {}
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        model = build_backbone(fill("features", ds["features"]))
    once["build backbone"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    encoder = load_encoder(files.codes(method, bits), files)
    db = load_database(files, method, bits)
    once["load model and database"] = time.perf_counter() - t0
    check_aux_settings(ds, files)
    sp, attrs = read_h5(files.split, ["paths", "split"])
    rows = np.flatnonzero(sp["split"] == 2)[:n_images]
    paths = [str(Path(attrs["image_root"]) / sp["paths"][r]) for r in rows]
    det_cfg = detector_config(ds, files)
    steps: dict[str, list[float]] = {k: [] for k in ("features", "detector", "encode", "search")}
    for path in paths:
        t0 = time.perf_counter()
        X, _, _ = features_of([path], ds["features"], "cpu", model=model)
        t1 = time.perf_counter()
        det = run_detector([path], np.array([1]), det_cfg, "cpu")
        Y, _ = aux_from_detections(det, np.array([1]), attrs["class_names"], ds["auxiliary"],
                                   where="detector")
        t2 = time.perf_counter()
        b = encoder.encode(X, Y)
        t3 = time.perf_counter()
        rank(pack_codes(b), db, 20)
        t4 = time.perf_counter()
        for k, s in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            steps[k].append(s)
    return {k: statistics.median(v) for k, v in steps.items()}, once, len(db.codes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="demo")
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--method", default="lagnh")
    p.add_argument("--configfile", default="config.yaml")
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--db", type=int, default=113287)
    p.add_argument("--search-bits", type=int, nargs="+", default=[16, 32, 64, 128])
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    load = os.getloadavg()
    lines = [f"# bench_search.py: {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
             f"{cpu_name()} ({os.cpu_count()} CPUs), {a.threads} torch threads, load average "
             f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}", ""]
    try:
        steps, once, n_db = pipeline_latency(a.dataset, a.bits, a.method, a.images,
                                             a.configfile)
        lines += [f"## Per query image: {a.dataset}, {a.method} {a.bits} bits, "
                  f"{a.images} images one at a time, {n_db} database codes", "",
                  "| step | median ms per image |", "|---|---:|"]
        lines += [f"| {k} | {v * 1000:.1f} |" for k, v in steps.items()]
        lines += [f"| **total** | **{sum(steps.values()) * 1000:.1f}** |", ""]
        lines += [f"One-time: {k} {v:.2f} s" for k, v in once.items()] + [""]
    except (FileNotFoundError, ValueError) as e:
        lines += [f"Part 1 skipped: {e}", ""]
    lines += [f"## Search alone: {a.db:,} synthetic codes, top-20, {a.queries} single queries",
              "", "| bits | median ms per query | 95th percentile ms | target ≤ 5 ms |",
              "|---:|---:|---:|---|"]
    for bits in a.search_bits:
        med, p95 = search_latency(a.db, bits, a.queries)
        lines.append(f"| {bits} | {med:.2f} | {p95:.2f} | {'met' if med <= 5 else 'missed'} |")
    load = os.getloadavg()
    lines += ["", f"Load average after: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"]
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(a.out) as tmp:
            Path(tmp).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
