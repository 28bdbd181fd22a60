"""Any registered method's settings scored on a validation split of the training images.

``python scripts/sweep_method.py --dataset demo --method tbh --bits 32 --out tbh.csv
--setting short='{"iterations": 500}' --setting long='{"iterations": 2000}' [--jobs 2]``

The sibling of ``scripts/sweep_lagnh.py`` for the other rows (the deep baselines' training
lengths, say): reads the training rows of ``results/{dataset}/{split,features,aux}.h5``
(:func:`pipeline.tuning.load_training_rows`; query and retrieval rows are never read), carves
them into validation queries / validation database / rest
(:func:`pipeline.validation.validation_split`), fits each setting on the rest and scores it by
MAP@K with the ground-truth labels of those training images, beside ITQ on the same split.
One CSV row per setting: ``bits, method, setting, params, map, train_seconds``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from typing import Any

import pandas as pd
import torch

from pipeline.artifacts import atomic_path
from pipeline.methods import check_params, get_method
from pipeline.tuning import load_training_rows
from pipeline.validation import validation_map, validation_split


def parse_setting(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME=JSON`` -> (name, parameters); a clear error otherwise.

        >>> parse_setting('long={"iterations": 2000}')
        ('long', {'iterations': 2000})
    """
    name, sep, params = text.partition("=")
    try:
        value = json.loads(params) if sep else None
    except json.JSONDecodeError as err:
        raise SystemExit(f"--setting {text!r}: the part after '=' is not JSON ({err})") from err
    if not name or not isinstance(value, dict):
        raise SystemExit(f"--setting {text!r}: expected NAME={{JSON object of parameters}}")
    return name, value


def _job(args: tuple[str, str, dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    method, name, params, ctx = args
    torch.set_num_threads(1)
    X, Y, L, vs = ctx["X"], ctx["Y"], ctx["L"], ctx["vs"]
    module = get_method(method)
    t0 = time.time()
    state = module.fit(X[vs.rest], Y[vs.rest], ctx["bits"], params, ctx["seed"])
    seconds = time.time() - t0
    q = module.encode(state, X[vs.query], Y[vs.query], params)
    db = module.encode(state, X[vs.database], Y[vs.database], params)
    row = {"method": method, "setting": name, "params": json.dumps(params, sort_keys=True),
           "map": validation_map(q, db, L[vs.query], L[vs.database], ctx["topk"]),
           "train_seconds": round(seconds, 1)}
    print(f"{method} {name}: {row['map']:.4f} ({seconds:.0f} s)", file=sys.stderr, flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="demo")
    p.add_argument("--results", default="results", help="the workflow's results folder")
    p.add_argument("--method", required=True, help="a registered method (pipeline.methods)")
    p.add_argument("--setting", action="append", required=True, metavar="NAME=JSON",
                   help="a named setting: the method's parameters as a JSON object; repeat")
    p.add_argument("--bits", type=int, default=32)
    p.add_argument("--val-query", type=float, default=0.2)
    p.add_argument("--val-database", type=float, default=0.3)
    p.add_argument("--topk", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0, help="the split's and the trainings' seed")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    if a.method == "lagnh":
        raise SystemExit("--method lagnh: use scripts/sweep_lagnh.py (it scores LAGNH's "
                         "encodings and the references built from its inputs)")
    settings = dict(parse_setting(s) for s in a.setting)
    for name, params in settings.items():  # refused before any training
        try:
            check_params(a.method, params, where=f"--setting {name}")
        except ValueError as err:
            raise SystemExit(str(err)) from err
    base = f"{a.results}/{a.dataset}"
    data = load_training_rows(f"{base}/split.h5", f"{base}/features.h5", f"{base}/aux.h5")
    vs = validation_split(len(data["X"]), a.val_query, a.val_database, a.seed)
    ctx = {**data, "vs": vs, "bits": a.bits, "seed": a.seed, "topk": a.topk}
    print(f"{a.dataset}: {len(data['X'])} training images -> validation {len(vs.query)} "
          f"queries / {len(vs.database)} database, models fitted on {len(vs.rest)}",
          file=sys.stderr)
    jobs = [("itq", "reference", {}, ctx)] + [(a.method, n, s, ctx) for n, s in settings.items()]
    if a.jobs == 1:
        rows = [_job(job) for job in jobs]
    else:
        with mp.get_context("fork").Pool(a.jobs) as pool:
            rows = pool.map(_job, jobs)
    df = pd.DataFrame(rows)
    df.insert(0, "bits", a.bits)
    with atomic_path(a.out) as tmp:
        df.to_csv(tmp, index=False)
    print(df.to_string(index=False), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
