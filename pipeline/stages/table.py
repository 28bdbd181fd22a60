"""Stage ``table``: the evaluation JSONs of one dataset → the Markdown MAP table with its caption.

``python -m pipeline.stages.table --inputs a.json b.json ... --out results/D_table.md
[--dataset D]``

It needs only the evaluations, so the table is written as soon as they are, whatever the
figures do (the ``report`` rule, which also waits for the figures, writes the CSVs). The layout
and the caption's convention: :mod:`pipeline.retrieval.tables`.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.artifacts import atomic_path
from pipeline.retrieval.tables import caption, load_results, map_rows, markdown_table


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.table",
                                description=__doc__.split("\n")[0])
    p.add_argument("--inputs", nargs="+", required=True, help="evaluation JSONs")
    p.add_argument("--out", required=True, help="results/{dataset}_table.md")
    p.add_argument("--dataset", default=None, help="dataset name for the caption")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        results = load_results(a.inputs)
        header, rows = map_rows(results)
        md = markdown_table(header, rows, caption(results, a.dataset))
        with atomic_path(a.out) as tmp:
            tmp.write_text(md)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"table: error: {e}", file=sys.stderr)
        return 2
    print(md, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
