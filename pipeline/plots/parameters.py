"""The paper's parameter figures: Figure 3 (MAP vs training epochs) and Figure 4 (MAP vs each
of lambda1..3, one panel per lambda, log x-axis).

Drawn by the ``figure`` stage (:mod:`pipeline.stages.figure`) from the tables of
:func:`pipeline.tuning.figure_table`.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.tuning import SENSITIVITY_KEYS  # noqa: E402


def plot_epochs(df: pd.DataFrame, title: str, bits: int) -> plt.Figure:
    """Figure 3: one MAP point per scored epoch count (``df``: ``epochs``, ``map``)."""
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot(df["epochs"], df["map"], "o-")
    ax.set_xlabel("epochs")
    ax.set_ylabel("MAP")
    ax.set_title(f"{title}: MAP vs epochs ({bits} bits)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_sensitivity(df: pd.DataFrame, title: str, bits: int) -> plt.Figure:
    """Figure 4: a panel per lambda (``df``: ``parameter``, ``value``, ``map``), log x-axis."""
    fig, axes = plt.subplots(1, len(SENSITIVITY_KEYS), figsize=(11, 3.2), sharey=True)
    for ax, key in zip(axes, SENSITIVITY_KEYS, strict=True):
        part = df[df["parameter"] == key]
        ax.plot(part["value"], part["map"], "o-")
        ax.set_xscale("log")
        ax.set_xlabel(key.replace("lambda", "λ"))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("MAP")
    fig.suptitle(f"{title}: MAP vs λ ({bits} bits)")
    fig.tight_layout()
    return fig
