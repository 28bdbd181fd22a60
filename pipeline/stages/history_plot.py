"""Stage ``history_plot``: a training history CSV (loss terms against epoch) → PNG.

``python -m pipeline.stages.history_plot --history H.csv --out H.png``
"""

from __future__ import annotations

import argparse

import pandas as pd

from pipeline.artifacts import atomic_path
from pipeline.plots.history import plot_history


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.history_plot",
                                description=__doc__)
    p.add_argument("--history", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    fig = plot_history(pd.read_csv(a.history), a.history)
    with atomic_path(a.out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
