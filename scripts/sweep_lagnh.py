"""LAGNH settings scored on a validation split of the training images (never the queries).

``python scripts/sweep_lagnh.py --dataset demo --bits 32 --jobs 2 --out sweep.csv
[--grid default] [--epochs N]``

Reads ``results/{dataset}/{split,features,aux}.h5`` (build them with ``snakemake
results/{dataset}/aux.h5 results/{dataset}/features.h5``), carves the training images into
validation queries / validation database / rest (:func:`pipeline.validation.validation_split`),
fits every grid point on the rest and scores each encoding on the validation split by MAP@K
with the ground-truth labels of those training images, beside the references built from the
same inputs (ITQ, the auxiliary labels as a code, ``aux_itq`` with its own inner validation).
Query and retrieval rows are never read. One CSV row per (setting, encoding).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipeline.artifacts import atomic_path, read_h5
from pipeline.baselines import aux as aux_method
from pipeline.baselines import aux_itq, itq
from pipeline.data.split_table import TRAIN
from pipeline.lagnh import method as lagnh
from pipeline.stage_inputs import load_inputs
from pipeline.validation import validation_map, validation_split

#: named grids: setting name -> LAGNH parameters over the dataset's base
GRIDS: dict[str, dict[str, dict[str, Any]]] = {
    "default": {
        "paper": {},
        "epochs_100": {"epochs": 100},
        "lr_1e-3": {"lr": 1e-3},
        "lambda1_10": {"lambda1": 10.0},
        "lambda1_1": {"lambda1": 1.0},
        "lambda3_10": {"lambda3": 10.0},
        "lambda3_0.1": {"lambda3": 0.1},
        "recons_clip": {"recons_clip": True},
        "sigma_k_3": {"sigma_neighbors": 3.0},
        "sigma_k_20": {"sigma_neighbors": 20.0},
        "mu_3": {"mu": 3.0},
        "recons_S": {"ablation": "recons-S"},
        "authors": {"variant": "authors"},
    },
    # the spread between training seeds (same validation split) of the closest contenders
    "seeds": {f"{name}_seed{seed}": {**params, "train_seed": seed}
              for name, params in (("paper", {}), ("epochs_100", {"epochs": 100}),
                                   ("sigma_k_3", {"sigma_neighbors": 3.0}))
              for seed in (1, 2)},
}
#: encodings scored for every trained model
ENCODINGS: dict[str, dict[str, Any]] = {
    "inductive_all_batchscale": {"encode_mode": "inductive", "encode_neighbors": None,
                                 "encode_scale": "batch"},
    "inductive_k64": {"encode_mode": "inductive", "encode_neighbors": 64,
                      "encode_scale": "none"},
    "batch_256": {"encode_mode": "batch", "encode_batch_size": 256},
}


def load(dataset: str) -> dict[str, np.ndarray]:
    base = f"results/{dataset}"
    inp = load_inputs(f"{base}/split.h5", f"{base}/features.h5", f"{base}/aux.h5")
    labels = read_h5(f"{base}/split.h5", ["labels"], stage="split")[0]["labels"]
    rows = (inp.split == TRAIN) & inp.valid
    return {"X": inp.features[rows], "Y": inp.aux[rows], "L": labels[rows]}


def _job(args: tuple[str, dict[str, Any], dict[str, Any]]) -> list[dict[str, Any]]:
    name, params, ctx = args
    torch.set_num_threads(1)
    X, Y, L, vs, bits, seed, topk = (ctx[k] for k in ("X", "Y", "L", "vs", "bits", "seed",
                                                       "topk"))
    params = dict(params)
    seed = params.pop("train_seed", seed)  # the split's seed stays
    t0 = time.time()
    state = lagnh.fit(X[vs.rest], Y[vs.rest], bits, params, seed)
    seconds = time.time() - t0
    out = []
    for enc, enc_params in ENCODINGS.items():
        p = {**params, **enc_params}
        q = lagnh.encode(state, X[vs.query], Y[vs.query], p)
        db = lagnh.encode(state, X[vs.database], Y[vs.database], p)
        out.append({"setting": name, "encoding": enc, "params": json.dumps(params),
                    "map": validation_map(q, db, L[vs.query], L[vs.database], topk),
                    "train_seconds": round(seconds, 1)})
    print(f"{name}: " + ", ".join(f"{r['encoding']} {r['map']:.4f}" for r in out)
          + f" ({seconds:.0f} s)", file=sys.stderr, flush=True)
    return out


def references(ctx: dict[str, Any]) -> list[dict[str, Any]]:
    X, Y, L, vs, bits, seed, topk = (ctx[k] for k in ("X", "Y", "L", "vs", "bits", "seed",
                                                       "topk"))
    rows = []

    def score(name: str, module: Any, **fit_kw: Any) -> None:
        state = module.fit(X[vs.rest], Y[vs.rest], bits, {}, seed, **fit_kw)
        q = module.encode(state, X[vs.query], Y[vs.query])
        db = module.encode(state, X[vs.database], Y[vs.database])
        rows.append({"setting": name, "encoding": "-", "params": "{}",
                     "map": validation_map(q, db, L[vs.query], L[vs.database], topk),
                     "train_seconds": None})

    score("itq", itq)
    score("aux", aux_method)
    score("aux_itq", aux_itq, labels=L[vs.rest])
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="demo")
    p.add_argument("--bits", type=int, default=32)
    p.add_argument("--grid", default="default", choices=sorted(GRIDS))
    p.add_argument("--only", default=None, help="comma list of settings of the grid to run")
    p.add_argument("--base-json", default="{}", help="LAGNH parameters under every setting")
    p.add_argument("--val-query", type=float, default=0.2)
    p.add_argument("--val-database", type=float, default=0.3)
    p.add_argument("--topk", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--no-references", dest="references", action="store_false",
                   help="skip the ITQ / aux / aux_itq rows")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    data = load(a.dataset)
    vs = validation_split(len(data["X"]), a.val_query, a.val_database, a.seed)
    ctx = {**data, "vs": vs, "bits": a.bits, "seed": a.seed, "topk": a.topk}
    print(f"{a.dataset}: {len(data['X'])} training images -> validation {len(vs.query)} "
          f"queries / {len(vs.database)} database, models fitted on {len(vs.rest)}",
          file=sys.stderr)
    base = json.loads(a.base_json)
    grid = GRIDS[a.grid]
    names = a.only.split(",") if a.only else list(grid)
    jobs = [(n, {**base, **grid[n]}, ctx) for n in names]
    rows = references(ctx) if a.references else []
    for r in rows:
        print(f"{r['setting']}: {r['map']:.4f}", file=sys.stderr)
    with mp.get_context("fork").Pool(a.jobs) as pool:
        for out in pool.imap_unordered(_job, jobs):
            rows.extend(out)
    df = pd.DataFrame(rows)
    df.insert(0, "bits", a.bits)
    with atomic_path(a.out) as tmp:
        df.to_csv(tmp, index=False)
    print(df.sort_values("map", ascending=False).to_string(index=False), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
