"""Stage ``timing``: the train/encode benchmark files of one dataset → the paper's Table 4.

``python -m pipeline.stages.timing --bits 32 --rows-json '[{"method": "itq", "train":
"logs/benchmarks/train/demo_itq_32.tsv", "encode": "logs/benchmarks/encode/demo_itq_32.tsv"},
...]' --out results/demo_timing.md [--dataset demo]``

Rows appear in the MAP table's order (:func:`pipeline.retrieval.tables.method_sort_key`). The
reading and the layout: :mod:`pipeline.retrieval.cost_table`.
"""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.artifacts import atomic_path
from pipeline.retrieval.cost_table import timing_markdown, timing_rows
from pipeline.retrieval.tables import DISPLAY, method_sort_key


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.timing",
                                description=__doc__.split("\n")[0])
    p.add_argument("--rows-json", required=True,
                   help="JSON list of {method, train, encode[, model_of]}: benchmark TSVs")
    p.add_argument("--bits", type=int, required=True, help="the code length timed")
    p.add_argument("--out", required=True, help="results/{dataset}_timing.md")
    p.add_argument("--dataset", default=None, help="dataset name for the caption")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        rows = json.loads(a.rows_json)
        if not isinstance(rows, list) or not rows:
            raise ValueError("--rows-json must be a non-empty JSON list")
        if not all(isinstance(r, dict) and "method" in r for r in rows):
            raise ValueError("--rows-json: every row must be an object with a 'method'")
        rows = sorted(rows, key=lambda r: method_sort_key(r["method"]))
        md = timing_markdown(timing_rows(rows), a.bits, a.dataset, DISPLAY)
        with atomic_path(a.out) as tmp:
            tmp.write_text(md)
    except (FileNotFoundError, ValueError, KeyError, json.JSONDecodeError) as e:
        print(f"timing: error: {e}", file=sys.stderr)
        return 2
    print(md, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
