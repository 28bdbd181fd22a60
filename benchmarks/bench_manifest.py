"""Cost of refreshing a dataset's manifests when the workflow starts (pipeline/data/inventory.py).

``python benchmarks/bench_manifest.py [--files 50000] [--repeats 5]`` builds a temporary folder of
``--files`` 2 KB files in 50 sub-folders and times :func:`write_manifests` on it, unchanged
(what every workflow start pays: a scan and a comparison, no write), in both modes; prints a
Markdown table (median of ``--repeats``; warm page cache).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from pipeline.data.inventory import write_manifests


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--files", type=int, default=50000)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        for i in range(a.files):
            d = root / f"d{i % 50}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{i}.jpg").write_bytes(b"x" * 2000)
        print("| mode | files | refresh, unchanged (median) |\n|---|---:|---:|")
        for mode in ("stat", "sha256"):
            spec = {"image_folders": [str(root)], "image_lists": [], "split_files": [],
                    "mode": mode}
            out = Path(tmp) / f"images_{mode}.tsv", Path(tmp) / f"inputs_{mode}.tsv"
            write_manifests(spec, *out)
            times = []
            for _ in range(a.repeats):
                t = time.perf_counter()
                assert write_manifests(spec, *out) == (False, False)
                times.append(time.perf_counter() - t)
            print(f"| {mode} | {a.files:,} | {statistics.median(times):.2f} s |")


if __name__ == "__main__":
    main()
