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

from pipeline.retrieval.scoring import (
    add_convention_args,
    evaluate_features_file,
    log_result,
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
    add_convention_args(p)
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
    log_result(out, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
