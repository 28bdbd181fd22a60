"""Stage ``report``: the evaluation JSONs of one dataset → the MAP CSV and the topK CSV.

``python -m pipeline.stages.report --inputs a.json b.json ... --map-csv results/D_map.csv
--pk-csv results/D_topk_precision.csv``

The Markdown table is the ``table`` stage's (:mod:`pipeline.stages.table`).

The files' layout and the caption's convention: :mod:`pipeline.retrieval.tables`. All inputs
must share one MAP convention (``topk`` and ``zero_hit``); mixing is an error.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.retrieval.tables import load_results, map_rows, pk_rows, write_csv, write_pk_csv


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.report",
                                description=__doc__.split("\n")[0])
    p.add_argument("--inputs", nargs="+", required=True, help="evaluation JSONs")
    p.add_argument("--map-csv", required=True, help="results/{dataset}_map.csv")
    p.add_argument("--pk-csv", required=True, help="results/{dataset}_topk_precision.csv")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        results = load_results(a.inputs)
        header, rows = map_rows(results)
        write_csv(a.map_csv, header, rows)
        write_pk_csv(a.pk_csv, pk_rows(results))
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"report: error: {e}", file=sys.stderr)
        return 2
    print(f"report: {a.map_csv}, {a.pk_csv} ({len(rows)} rows)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
