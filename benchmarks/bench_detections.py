"""Peak memory of turning detections into auxiliary labels: in memory (a JSON of every
detection, as the auxiliary stage read ``detections.json`` before) vs ``detections.h5`` read in
blocks; and of converting a COCO results json (detector kind ``coco_results``).

``python benchmarks/bench_detections.py [--images 20000] [--per-image 100] [--work DIR]``

Synthetic data: ``--images`` images × ``--per-image`` detections over MS COCO's 80 classes,
random scores. Each measurement runs in a fresh interpreter and reports its own peak resident
set size (``ru_maxrss``) and wall time; memory does not depend on the machine's load, time does.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RUN = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
t = time.perf_counter()
{body}
print(json.dumps({{"seconds": time.perf_counter() - t,
                  "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def measure(body: str) -> dict:
    out = subprocess.run([sys.executable, "-c", RUN.format(root=str(ROOT), body=body)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def make(work: Path, n: int, per: int) -> None:
    from pipeline.data.coco import COCO2017_CATEGORIES
    from pipeline.data.split_table import SplitTable, write_split

    names = [nm for _, nm in COCO2017_CATEGORIES]
    cids = np.array([c for c, _ in COCO2017_CATEGORIES])
    ids = np.arange(1, n + 1)
    write_split(SplitTable(ids, np.array([f"{i}.jpg" for i in ids], dtype=object),
                           np.zeros((n, 80), np.uint8), np.zeros(n, np.uint8), names,
                           str(work), "random", {"category_ids": cids.tolist()}),
                work / "split.h5", "bench", 0)
    rng = np.random.default_rng(0)
    with open(work / "results.json", "w") as fh:
        fh.write("[")
        for i in ids:
            cat, sc = rng.choice(cids, per), np.round(rng.random(per), 5)
            fh.write(",".join(json.dumps({"image_id": int(i), "category_id": int(c),
                                          "score": float(s), "bbox": [1.5, 2.25, 30.0, 40.0]})
                              for c, s in zip(cat, sc, strict=True)))
            fh.write("," if i < n else "")
        fh.write("]")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--per-image", type=int, default=100)
    p.add_argument("--work", default=None)
    a = p.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="bench_detections_"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    make(work, a.images, a.per_image)
    print(f"data: {a.images} images x {a.per_image} detections in {time.perf_counter() - t:.0f} s"
          f" ({(work / 'results.json').stat().st_size / 2**20:.0f} MiB of json)")
    names = "[nm for _, nm in COCO2017_CATEGORIES]"
    rows = {
        "convert results json -> detections.h5 (detect, coco_results)": measure(f"""
from pipeline.stages.detect import main
main(["--split", "{work}/split.h5", "--detector-json",
      '{{"kind": "coco_results", "path": "{work}/results.json", "categories": "coco2017"}}',
      "--out", "{work}/detections.h5"])"""),
        "aux labels from detections.h5, in blocks (auxiliary stage now)": measure(f"""
from pipeline.stages.auxiliary import main
main(["--split", "{work}/split.h5", "--detections", "{work}/detections.h5",
      "--threshold", "0.5", "--out", "{work}/aux.h5"])"""),
        "aux labels from all detections in memory (auxiliary stage before)": measure(f"""
import numpy as np
from pipeline.artifacts import read_h5
from pipeline.data.coco import COCO2017_CATEGORIES
from pipeline.detectors.multihot import detections_to_aux
ids = read_h5("{work}/split.h5", ["ids"])[0]["ids"]
det = {{"categories": [{{"id": c, "name": n}} for c, n in COCO2017_CATEGORIES],
       "detections": json.load(open("{work}/results.json"))}}
detections_to_aux(det, ids, {names}, {{}}, 0.5)"""),
    }
    print("\n| step | peak RSS (MiB) | wall (s) |\n|---|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['max_rss_mib']:.0f} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
