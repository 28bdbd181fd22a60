"""Curves of the paper's Figure 2: topK-precision and PR within Hamming radius, per code length.

Drawn by the ``curves`` stage (:mod:`pipeline.stages.curves`) from the evaluation JSONs.

One subplot per code length, one curve per method (same colour for a method in every subplot).
The topK-precision figure also draws the ``float`` ceiling (dashed, black) in every subplot; the
PR figure plots precision against recall for Hamming radius 0..r (markers every few radii).
Rendering uses matplotlib's Agg backend; each file is written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.artifacts import atomic_path  # noqa: E402
from pipeline.retrieval.tables import DISPLAY, FLOAT, method_sort_key  # noqa: E402


def _colours(methods: list[str]) -> dict[str, Any]:
    """A distinct colour per row: tab10 up to ten rows, tab20 up to twenty (the demo has 12)."""
    if len(methods) <= 10:
        cmap, n = plt.get_cmap("tab10"), 10
    else:
        cmap, n = plt.get_cmap("tab20"), 20
    return {m: cmap(i % n) for i, m in enumerate(methods)}


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 4)
    return -(-n // cols), cols


def save_figure(fig: Any, paths: Sequence[str | None]) -> None:
    """Write ``fig`` to each path (format from its suffix, atomically); ``None`` paths skipped."""
    for path in paths:
        if not path:
            continue
        fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")


def topk_precision_figure(results: list[dict[str, Any]], title: str | None = None) -> Any:
    """Figure: topK-precision vs K, one subplot per code length."""
    bits = sorted({int(r["bits"]) for r in results if r["bits"] is not None})
    methods = sorted({r["method"] for r in results if r["method"] != FLOAT}, key=method_sort_key)
    colours = _colours(methods)
    ceiling = [r for r in results if r["method"] == FLOAT]
    nrows, ncols = _grid(max(len(bits), 1))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False,
                             sharey=True)
    for ax, b in zip(axes.ravel(), bits, strict=False):
        for m in methods:
            for r in results:
                if r["method"] == m and r["bits"] is not None and int(r["bits"]) == b:
                    pk = r["precision_at_k"]
                    ax.plot(pk["k"], _nan(pk["precision"]), label=DISPLAY.get(m, m),
                            color=colours[m], lw=1.5)
        for r in ceiling:
            pk = r["precision_at_k"]
            ax.plot(pk["k"], _nan(pk["precision"]), label=DISPLAY[FLOAT], color="black",
                    ls="--", lw=1.2)
        ax.set_title(f"{b} bits")
        ax.set_xlabel("number of retrieved images K")
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("precision@K")
    for ax in axes.ravel()[len(bits):]:
        ax.axis("off")
    _legend(fig, axes)
    if title:
        fig.suptitle(f"{title}: topK-precision")
    fig.tight_layout()
    return fig


def pr_figure(results: list[dict[str, Any]], title: str | None = None) -> Any:
    """Figure: precision vs recall within Hamming radius 0..r, one subplot per code length."""
    coded = [r for r in results if r["bits"] is not None and r.get("pr_radius")]
    bits = sorted({int(r["bits"]) for r in coded})
    methods = sorted({r["method"] for r in results if r["method"] != FLOAT}, key=method_sort_key)
    colours = _colours(methods)
    nrows, ncols = _grid(max(len(bits), 1))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False,
                             sharey=True)
    for ax, b in zip(axes.ravel(), bits, strict=False):
        for m in methods:
            for r in coded:
                if r["method"] == m and int(r["bits"]) == b:
                    pr = r["pr_radius"]
                    ax.plot(_nan(pr["recall"]), _nan(pr["precision"]), label=DISPLAY.get(m, m),
                            color=colours[m], lw=1.5, marker="o", ms=2.5,
                            markevery=max(1, len(pr["radius"]) // 16))
        ax.set_title(f"{b} bits")
        ax.set_xlabel("recall (Hamming radius 0..r)")
        ax.set_xlim(0, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("precision")
    for ax in axes.ravel()[len(bits):]:
        ax.axis("off")
    _legend(fig, axes)
    if title:
        fig.suptitle(f"{title}: precision-recall within Hamming radius")
    fig.tight_layout()
    return fig


def _nan(values: Sequence[float | None]) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def _legend(fig: Any, axes: Any) -> None:
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    if handles:
        axes.ravel()[0].legend(handles, labels, fontsize=7, loc="best")


__all__ = ["topk_precision_figure", "pr_figure", "save_figure"]
