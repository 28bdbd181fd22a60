"""Stage ``evaluate``: MAP@K, topK-precision and PR within Hamming radius of one codes file.

``python -m pipeline.stages.evaluate --split S --codes C [--topk 1000|all]
[--zero-hit drop|zero] [--pk-grid 1,50,...] --out OUT.json``

The JSON's fields: :mod:`pipeline.retrieval.scoring`; the metrics:
:mod:`pipeline.retrieval.metrics`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.retrieval.scoring import (
    add_convention_args,
    evaluate_codes_file,
    log_result,
    parse_grid,
    parse_topk,
    write_json,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.evaluate",
                                description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", required=True, help="results/{dataset}/split.h5")
    p.add_argument("--codes", required=True, help="results/{dataset}/codes/{method}_{bits}.h5")
    p.add_argument("--method-name", default=None,
                   help="method name in the JSON (default: the codes file's 'method' attr)")
    add_convention_args(p)
    p.add_argument("--no-pr", action="store_true",
                   help="skip precision/recall within Hamming radius")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    p.add_argument("--device", default=None,
                   help="'numpy' (CPU), 'cuda', ... (default: CUDA when available)")
    p.add_argument("--out", required=True, help="results/{dataset}/eval/{method}_{bits}.json")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        topk = parse_topk(a.topk)
        ks = parse_grid(a.pk_grid)
        for path in (a.split, a.codes):
            if not Path(path).exists():
                raise FileNotFoundError(f"{path}: file not found")
        out = evaluate_codes_file(a.split, a.codes, topk=topk, zero_hit=a.zero_hit, ks=ks,
                                  pr=not a.no_pr, method_name=a.method_name,
                                  threads=a.threads, device=a.device)
        write_json(out, a.out)
    except (FileNotFoundError, KeyError, ValueError, OSError, TypeError) as e:
        print(f"evaluate: error: {e}", file=sys.stderr)
        return 2
    log_result(out, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
