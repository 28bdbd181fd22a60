"""Stage ``curves``: topK-precision and PR-within-Hamming-radius figures (paper's Figure 2).

``python -m pipeline.stages.curves --inputs a.json b.json ... [--pk-png P] [--pk-pdf P]
[--pr-png P] [--pr-pdf P] [--title T]``

One subplot per code length, one curve per method (same colour for a method in every subplot).
The topK-precision figure also draws the ``float`` ceiling (dashed, black) in every subplot; the
PR figure plots precision against recall for Hamming radius 0..r (markers every few radii).
Rendering uses matplotlib's Agg backend; each file is written atomically
(:mod:`pipeline.plots.precision`).
"""

from __future__ import annotations

import argparse
import sys

from pipeline.plots.precision import plt, pr_figure, save_figure, topk_precision_figure
from pipeline.retrieval.tables import load_results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.curves",
                                description=__doc__.split("\n")[0])
    p.add_argument("--inputs", nargs="+", required=True, help="evaluation JSONs")
    p.add_argument("--pk-png", default=None)
    p.add_argument("--pk-pdf", default=None)
    p.add_argument("--pr-png", default=None)
    p.add_argument("--pr-pdf", default=None)
    p.add_argument("--title", default=None, help="figure title prefix (e.g. the dataset)")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if not any((a.pk_png, a.pk_pdf, a.pr_png, a.pr_pdf)):
        print("plots: error: give at least one of --pk-png/--pk-pdf/--pr-png/--pr-pdf",
              file=sys.stderr)
        return 2
    try:
        results = load_results(a.inputs)
        if a.pk_png or a.pk_pdf:
            fig = topk_precision_figure(results, a.title)
            save_figure(fig, [a.pk_png, a.pk_pdf])
            plt.close(fig)
        if a.pr_png or a.pr_pdf:
            fig = pr_figure(results, a.title)
            save_figure(fig, [a.pr_png, a.pr_pdf])
            plt.close(fig)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"plots: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
