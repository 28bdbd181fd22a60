"""Sanity check of LAGNH against ITQ on synthetic multi-label data (not the paper's numbers).

``.venv/bin/python benchmarks/sanity_lagnh.py [--bits 32] [--epochs 300] [--seed 0]``

2,000 training, 500 query and 5,000 database items, 24 classes (1-3 per item); 512-d ReLU
features = the sum of the items' label prototypes + Gaussian noise. Auxiliary labels are the true
labels with 15% of the positives dropped and 1% false positives added (a noisy "detector").
MAP@1000 of Hamming ranking, relevant = shares a true label. Every method runs with its
defaults: nothing is tuned. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.methods import get_method  # noqa: E402
from pipeline.retrieval.metrics import mean_average_precision  # noqa: E402


def multi_hot(rng: np.random.Generator, n: int, classes: int) -> np.ndarray:
    """``n`` label rows with 1-3 of ``classes`` classes on, uint8."""
    labels = np.zeros((n, classes), dtype=np.uint8)
    for i, k in enumerate(rng.integers(1, 4, size=n)):
        labels[i, rng.choice(classes, size=k, replace=False)] = 1
    return labels


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bits", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    classes, dim = 24, 512
    proto = rng.standard_normal((classes, dim))
    sizes = {"train": 2000, "query": 500, "db": 5000}
    data = {}
    for name, n in sizes.items():
        y = multi_hot(rng, n, classes)
        x = np.maximum(y @ proto + rng.standard_normal((n, dim)), 0).astype(np.float32)
        aux = y.copy()
        aux[(aux == 1) & (rng.random(aux.shape) < 0.15)] = 0
        aux[(aux == 0) & (rng.random(aux.shape) < 0.01)] = 1
        data[name] = (x, y, aux)

    fitted: dict[str, dict] = {}  # one training per method and fit-time params

    def score(method: str, params: dict, use_aux_input: bool = False) -> float:
        impl = get_method(method)
        fit_key = repr((method, use_aux_input, sorted(
            (k, v) for k, v in params.items() if k != "encode_mode")))

        def feats(part: str) -> np.ndarray:
            x, _, aux = data[part]
            return np.hstack([x, aux.astype(np.float32)]) if use_aux_input else x

        if fit_key not in fitted:
            fitted[fit_key] = impl.fit(feats("train"), data["train"][2], args.bits, params,
                                       args.seed)
        state = fitted[fit_key]
        codes = {p: impl.encode(state, feats(p), data[p][2], params) for p in ("query", "db")}
        return mean_average_precision(codes["query"], codes["db"], data["query"][1],
                                      data["db"][1], 1000).map

    lagnh = {"epochs": args.epochs}
    rows = [
        ("LSH on features", score("lsh", {})),
        ("ITQ on features", score("itq", {})),
        ("ITQ on [features, aux labels]", score("itq", {}, use_aux_input=True)),
        ("LAGNH paper, batch mode (default)", score("lagnh", {**lagnh, "encode_mode": "batch"})),
        ("LAGNH paper, inductive (K = 64)", score("lagnh", {**lagnh, "encode_mode": "inductive"})),
        # the authors' variant fixes its own epochs (300) and batch-wise encoding
        ("LAGNH authors, batch mode", score("lagnh", {"variant": "authors"})),
    ]
    print(f"| method ({args.bits} bits, seed {args.seed}) | MAP@1000 |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
