"""Stage ``gallery``: a few fixed queries and their Hamming top-k per method, as one PNG.

``python -m pipeline.stages.gallery --split S --codes C1 C2 ... [--n-queries 4] [--k 10]
[--seed 0] [--thumb 96] [--image-root DIR] --out results/D_gallery_32.png``

What the picture shows: :mod:`pipeline.plots.neighbours`. The PNG is written atomically.
"""

from __future__ import annotations

import argparse
import sys

from pipeline import schema
from pipeline.artifacts import atomic_path
from pipeline.plots.neighbours import render_gallery


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.gallery",
                                description=__doc__.split("\n")[0])
    p.add_argument("--split", required=True, help="results/{dataset}/split.h5")
    p.add_argument("--codes", nargs="+", required=True, help="codes files (one line each)")
    p.add_argument("--n-queries", type=int,
                   default=schema.defaults("eval")["gallery_queries"])
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=schema.dataset_default("seed"))
    p.add_argument("--thumb", type=int, default=96, help="thumbnail size in pixels")
    p.add_argument("--image-root", default=None, help="override the split's image_root attr")
    p.add_argument("--out", required=True, help="results/{dataset}_gallery_{bits}.png")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        if a.n_queries < 1 or a.k < 1 or a.thumb < 16:
            raise ValueError("--n-queries and --k must be >= 1, --thumb >= 16")
        img = render_gallery(a.split, a.codes, n_queries=a.n_queries, k=a.k, seed=a.seed,
                             thumb=a.thumb, image_root=a.image_root)
        with atomic_path(a.out) as tmp:
            img.save(tmp, format="PNG")
    except (FileNotFoundError, KeyError, ValueError, OSError) as e:
        print(f"gallery: error: {e}", file=sys.stderr)
        return 2
    print(f"gallery: wrote {a.out} ({img.width}x{img.height})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
