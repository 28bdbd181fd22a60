"""Stage ``report``: the evaluation JSONs of one dataset → MAP table, topK CSV, Markdown table.

``python -m pipeline.stages.report --inputs a.json b.json ... --map-csv results/D_map.csv
--pk-csv results/D_topk_precision.csv --table-md results/D_table.md [--dataset D]``

The files' layout and the caption's convention: :mod:`pipeline.retrieval.tables`. All inputs
must share one MAP convention (``topk`` and ``zero_hit``); mixing is an error.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.artifacts import atomic_path
from pipeline.retrieval.tables import (
    caption,
    load_results,
    map_rows,
    markdown_table,
    pk_rows,
    write_csv,
    write_pk_csv,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.report",
                                description=__doc__.split("\n")[0])
    p.add_argument("--inputs", nargs="+", required=True, help="evaluation JSONs")
    p.add_argument("--map-csv", required=True, help="results/{dataset}_map.csv")
    p.add_argument("--pk-csv", required=True, help="results/{dataset}_topk_precision.csv")
    p.add_argument("--table-md", required=True, help="results/{dataset}_table.md")
    p.add_argument("--dataset", default=None, help="dataset name for the caption")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        results = load_results(a.inputs)
        header, rows = map_rows(results)
        write_csv(a.map_csv, header, rows)
        write_pk_csv(a.pk_csv, pk_rows(results))
        md = markdown_table(header, rows, caption(results, a.dataset))
        with atomic_path(a.table_md) as tmp:
            tmp.write_text(md)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"report: error: {e}", file=sys.stderr)
        return 2
    print(md, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
