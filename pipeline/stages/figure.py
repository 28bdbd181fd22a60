"""Stage ``figure``: the paper's Figure 3 (MAP vs epochs) or Figure 4 (MAP vs lambda1..3).

``python -m pipeline.stages.figure --figure epochs|sensitivity --inputs p.json ... --png P
--pdf P --csv C [--title demo] [--bits 32]``

Reads the ``figure_point`` JSONs (:func:`pipeline.tuning.figure_table`) and draws them
(:mod:`pipeline.plots.parameters`).
"""

from __future__ import annotations

import argparse

from pipeline.artifacts import atomic_path
from pipeline.plots.parameters import plot_epochs, plot_sensitivity
from pipeline.tuning import figure_table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.figure", description=__doc__)
    p.add_argument("--figure", choices=("epochs", "sensitivity"), required=True)
    p.add_argument("--inputs", nargs="+", required=True)
    p.add_argument("--png", required=True)
    p.add_argument("--pdf", required=True)
    p.add_argument("--csv", required=True)
    p.add_argument("--title", default="")
    p.add_argument("--bits", type=int, required=True)
    a = p.parse_args(argv)
    df = figure_table(a.figure, a.inputs)
    plot = plot_epochs if a.figure == "epochs" else plot_sensitivity
    fig = plot(df, a.title, a.bits)
    for path in (a.png, a.pdf):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.rsplit(".", 1)[1], dpi=150)
    with atomic_path(a.csv) as tmp:
        df.to_csv(tmp, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
