"""Stage ``evaluate_float``: MAP@K and topK-precision of Euclidean ranking of the features.

``python -m pipeline.stages.evaluate_float --split S --features F --method-name float
[--topk 1000|all] [--zero-hit drop|zero] [--pk-grid 1,50,...] --out OUT.json``

The real-valued ceiling of the table (no code length, no PR curve). The JSON's fields:
:mod:`pipeline.retrieval.scoring`; the metrics: :mod:`pipeline.retrieval.metrics`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline import schema
from pipeline.retrieval.metrics import DEFAULT_TOPK, ZERO_HIT_MODES
from pipeline.retrieval.scoring import (
    evaluate_features_file,
    log_stderr,
    parse_grid,
    parse_topk,
    write_json,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.evaluate_float",
                                description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", required=True, help="results/{dataset}/split.h5")
    p.add_argument("--features", required=True,
                   help="results/{dataset}/features.h5 (float ceiling)")
    p.add_argument("--method-name", default=None,
                   help="method name in the JSON (required, e.g. 'float')")
    p.add_argument("--topk", default=str(DEFAULT_TOPK),
                   help="K of MAP@K, or 'all' for the whole ranking (default: schema's eval.topk)")
    p.add_argument("--zero-hit", choices=ZERO_HIT_MODES,
                   default=schema.defaults("eval")["zero_hit"],
                   help="queries without any relevant retrieval item: drop them (authors' "
                        "convention, default) or count them as 0")
    p.add_argument("--pk-grid", default=None,
                   help="comma list of K for topK-precision (default 1,50,100,...,5000)")
    p.add_argument("--out", required=True, help="results/{dataset}/eval/float.json")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        topk = parse_topk(a.topk)
        ks = parse_grid(a.pk_grid)
        if not a.method_name:
            raise ValueError("--features needs --method-name (e.g. --method-name float)")
        for path in (a.split, a.features):
            if not Path(path).exists():
                raise FileNotFoundError(f"{path}: file not found")
        out = evaluate_features_file(a.split, a.features, method_name=a.method_name,
                                     topk=topk, zero_hit=a.zero_hit, ks=ks)
        write_json(out, a.out)
    except (FileNotFoundError, KeyError, ValueError, OSError, TypeError) as e:
        print(f"evaluate: error: {e}", file=sys.stderr)
        return 2
    log_stderr(f"MAP@{out['topk']} = {out['map']} ({out['n_queries']} of {out['n_queries_total']} "
         f"queries, zero_hit={out['zero_hit']}) in {out['seconds']} s -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
