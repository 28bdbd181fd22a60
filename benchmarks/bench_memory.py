"""Peak resident memory of every stage that reads the big artifacts, at MS COCO's shapes.

Builds COCO-shaped synthetic inputs in a temporary folder: a COCO-format instances json of
123,287 images (80 categories, 7 annotations with a polygon each per image), a
``detections.json`` of 20 detections per image, and ``features.h5`` of 123,287 x 4,096
float32 (1.9 GiB of values; the pipeline's own writer, gzip as in a real run). The split is
5,000 train / 5,000 query / 113,287 retrieval. Then it runs each stage as the workflow does
(``python -m pipeline.stages.<rule>``) under ``/usr/bin/time -v`` and reads its "Maximum
resident set size". LAGNH trains with the paper's COCO settings (the schema's defaults) for
``--epochs`` epochs only: the peak is memory, not time.

    python benchmarks/bench_memory.py [--workdir /tmp/x] [--keep] [--out table.md]

Needs about 2.5 GB of free disk in ``--workdir`` (deleted afterwards unless ``--keep``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import cpu_name  # noqa: E402

from pipeline.artifacts import RowWriter, atomic_path  # noqa: E402
from pipeline.data.coco import COCO2017_CATEGORIES  # noqa: E402

N_IMAGES, DIM, N_TRAIN, N_QUERY = 123_287, 4096, 5000, 5000
GIB = 1 << 30
#: targets of issue #15 item 7 (GiB)
TARGET_TRAIN, TARGET_OTHER = 1.0, 2.5


def write_instances(path: Path, rng: np.random.Generator, n_images: int,
                    per_image: int = 7) -> None:
    """A COCO instances json (written as text, streamed) with polygons like the real file's."""
    cats = [{"id": i, "name": n, "supercategory": "x"} for i, n in COCO2017_CATEGORIES]
    cat_ids = np.array([i for i, _ in COCO2017_CATEGORIES])
    with open(path, "w") as fh:
        fh.write('{"info": {}, "licenses": [], "categories": ' + json.dumps(cats))
        fh.write(', "images": [')
        fh.write(",".join(
            f'{{"id": {i + 1}, "file_name": "{i + 1:012d}.jpg", "width": 640, "height": 480}}'
            for i in range(n_images)))
        fh.write('], "annotations": [')
        aid = 0
        for i in range(n_images):
            cs = rng.choice(cat_ids, per_image)
            parts = []
            for c in cs:
                aid += 1
                poly = ", ".join(f"{v:.2f}" for v in rng.random(16) * 400)
                parts.append(f'{{"id": {aid}, "image_id": {i + 1}, "category_id": {int(c)}, '
                             f'"iscrowd": 0, "area": 1234.5, "bbox": [10.0, 20.0, 30.0, 40.0], '
                             f'"segmentation": [[{poly}]]}}')
            fh.write(("," if i else "") + ",".join(parts))
        fh.write("]}")


def write_detections(path: Path, rng: np.random.Generator, n_images: int,
                     per_image: int = 20) -> None:
    cats = [{"id": i, "name": n} for i, n in COCO2017_CATEGORIES]
    cat_ids = np.array([i for i, _ in COCO2017_CATEGORIES])
    with open(path, "w") as fh:
        fh.write('{"detector": {"kind": "faster_rcnn"}, "categories": ' + json.dumps(cats))
        fh.write(f', "n_images": {n_images}, "skipped_ids": [], "detections": [')
        for i in range(n_images):
            cs, ss = rng.choice(cat_ids, per_image), rng.random(per_image)
            fh.write(("," if i else "") + ",".join(
                f'{{"image_id": {i + 1}, "category_id": {int(c)}, '
                f'"bbox": [1.5, 2.5, 30.25, 40.75], "score": {s:.4f}}}'
                for c, s in zip(cs, ss, strict=True)))
        fh.write("]}")


def write_features(path: Path, ids: np.ndarray, rng: np.random.Generator,
                   block: int = 2048) -> None:
    with RowWriter(path, n_rows=len(ids), stage="features", ids=ids,
                   columns={"features": ((DIM,), np.float32), "valid": ((), np.uint8)},
                   attrs={"backbone": "synthetic", "dim": DIM}) as w:
        for s in range(0, len(ids), block):
            n = min(block, len(ids) - s)
            w.write(s, {"features": rng.random((n, DIM), dtype=np.float32),
                        "valid": np.ones(n, np.uint8)})


def peak_rss(cmd: list[str], log: Path) -> tuple[float, float]:
    """(peak RSS in GiB, wall seconds) of ``cmd`` under ``/usr/bin/time -v``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    t0 = time.time()
    with open(log, "w") as fh:
        rc = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", *cmd], cwd=ROOT,
                            env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    text = log.read_text()
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {rc}); see {log}:\n{text[-3000:]}")
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    return kb * 1024 / GIB, time.time() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", default=None, help="default: a new folder under $TMPDIR")
    p.add_argument("--keep", action="store_true", help="keep the synthetic artifacts")
    p.add_argument("--epochs", type=int, default=2, help="LAGNH epochs (memory, not time)")
    p.add_argument("--images", type=int, default=N_IMAGES,
                   help="images (default COCO's; fewer only to try the script out)")
    p.add_argument("--out", default=None, help="also write the Markdown table here")
    a = p.parse_args(argv)
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_memory_"))
    work.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(work).free
    if free < 3 * GIB:
        raise SystemExit(f"{work}: {free / GIB:.1f} GiB free; the artifacts need about 2.5 GiB")
    rng = np.random.default_rng(0)
    n_train = n_query = min(N_TRAIN, a.images // 4)
    rows: list[tuple[str, float, float, float]] = []
    logs = work / "logs"
    logs.mkdir(exist_ok=True)

    def run(label: str, target: float, *cmd: str) -> None:
        gib, secs = peak_rss(list(cmd), logs / f"{len(rows):02d}.log")
        rows.append((label, gib, target, secs))
        print(f"{label}: {gib:.2f} GiB peak RSS ({secs:.0f} s)", flush=True)

    try:
        t0 = time.time()
        write_instances(work / "instances.json", rng, a.images)
        write_detections(work / "detections.json", rng, a.images)
        print(f"json inputs written in {time.time() - t0:.0f} s", flush=True)
        split, feats, aux = work / "split.h5", work / "features.h5", work / "aux.h5"
        source = {"kind": "coco_format", "instances": str(work / "instances.json"),
                  "images": str(work / "images")}
        run("split", TARGET_OTHER, "pipeline.stages.split", "--dataset", "cocosynth",
            "--source-json", json.dumps(source), "--split-json",
            json.dumps({"protocol": "random", "train": n_train, "query": n_query,
                        "empty_images": "keep"}), "--out", str(split))
        import h5py

        with h5py.File(split, "r") as f:
            ids = f["ids"][...]
        t0 = time.time()
        write_features(feats, ids, rng)
        print(f"features.h5 ({feats.stat().st_size / GIB:.2f} GiB) written in "
              f"{time.time() - t0:.0f} s", flush=True)
        run("auxiliary", TARGET_OTHER, "pipeline.stages.auxiliary", "--split", str(split),
            "--detections", str(work / "detections.json"), "--out", str(aux))
        models, codes, evals = work / "models", work / "codes", work / "eval"
        common = ["--split", str(split), "--features", str(feats), "--aux", str(aux)]
        for method in ("lagnh", "itq", "sgh", "sh", "pcah", "lsh", "sklsh", "aux_itq"):
            params = {"epochs": a.epochs} if method == "lagnh" else {}
            run(f"train {method}" + (f" ({a.epochs} epochs)" if method == "lagnh" else ""),
                TARGET_TRAIN, "pipeline.stages.train", "--method", method, "--bits", "64",
                *common, "--params-json", json.dumps(params), "--seed", "0", "--threads", "1",
                "--out", str(models / f"{method}_64.pt"),
                "--history", str(models / f"{method}_64_history.csv"))
        for row, method, params in (("lagnh", "lagnh", {"epochs": a.epochs}),
                                    ("lagnh_batch", "lagnh",
                                     {"epochs": a.epochs, "encode_mode": "batch"}),
                                    ("itq", "itq", {}), ("sgh", "sgh", {})):
            run(f"encode {row}", TARGET_OTHER, "pipeline.stages.encode", "--model",
                str(models / f"{method}_64.pt"), *common, "--threads", "1", "--method", row,
                "--params-json", json.dumps(params), "--out", str(codes / f"{row}_64.h5"))
        for row in ("lagnh", "lagnh_batch", "itq", "sgh"):
            run(f"evaluate {row}", TARGET_OTHER, "pipeline.stages.evaluate", "--split",
                str(split), "--codes", str(codes / f"{row}_64.h5"), "--topk", "1000",
                "--out", str(evals / f"{row}_64.json"))
        run("evaluate_float", TARGET_OTHER, "pipeline.stages.evaluate_float", "--split",
            str(split), "--features", str(feats), "--method-name", "float", "--topk", "1000",
            "--out", str(evals / "float.json"))
        jsons = sorted(str(p) for p in evals.glob("*.json"))
        run("table", TARGET_OTHER, "pipeline.stages.table", "--dataset", "cocosynth",
            "--inputs", *jsons, "--out", str(work / "table.md"))
        run("report", TARGET_OTHER, "pipeline.stages.report", "--inputs", *jsons,
            "--map-csv", str(work / "map.csv"), "--pk-csv", str(work / "pk.csv"))
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Peak RSS at COCO shapes ({a.images:,} images, {DIM}-d float32 features); "
             f"{cpu_name()}, {os.cpu_count()} CPUs, {when}; load average (1 min) at the end: "
             f"{load:.2f} (other processes share the CPUs; memory figures do not depend on it)", "",
             "| stage | peak RSS (GiB) | target (GiB) | met? | wall (s) |",
             "|---|---:|---:|---|---:|"]
    lines += [f"| {s} | {g:.2f} | ≤ {t:g} | {'yes' if g <= t else '**no**'} | {w:.0f} |"
              for s, g, t, w in rows]
    text = "\n".join(lines)
    print(text)
    if a.out:
        with atomic_path(a.out) as tmp:
            tmp.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
