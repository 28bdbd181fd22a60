"""A training history (one line per loss term against epoch) as a figure.

Drawn by the ``history_plot`` stage (:mod:`pipeline.stages.history_plot`).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def plot_history(history: pd.DataFrame, title: str = "") -> plt.Figure:
    """One subplot per ``loss_*`` column (log scale where all values are positive)."""
    x = "epoch" if "epoch" in history else history.columns[0]
    cols = [c for c in history.columns if c.startswith("loss")] or [
        c for c in history.columns if c != x]
    fig, axes = plt.subplots(1, max(1, len(cols)), figsize=(3 * max(1, len(cols)), 2.8),
                             squeeze=False)
    for ax, col in zip(axes[0], cols, strict=False):
        ax.plot(history[x], history[col])
        ax.set_title(col, fontsize=9)
        ax.set_xlabel(x)
        if (history[col] > 0).all():
            ax.set_yscale("log")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
