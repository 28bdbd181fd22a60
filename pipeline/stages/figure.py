"""Stage ``figure``: the paper's Figure 3 (MAP vs epochs) or Figure 4 (MAP vs lambda1..3).

``python -m pipeline.stages.figure --figure epochs|sensitivity --inputs p.json ... --png P
--pdf P --csv C [--title demo] [--bits 32]``
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.artifacts import atomic_path  # noqa: E402
from pipeline.tuning import SENSITIVITY_KEYS, read_json  # noqa: E402


def table(paths: list[str]) -> pd.DataFrame:
    rows = []
    for path in paths:
        pt = read_json(path)
        for r in pt["rows"]:
            rows.append({**{k: pt["params"].get(k) for k in SENSITIVITY_KEYS if k in pt["params"]},
                         "epochs": r["epochs"], "map": r["map"]})
    return pd.DataFrame(rows)


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
    df = table(a.inputs)
    if a.figure == "epochs":
        df = df.sort_values("epochs")[["epochs", "map"]]
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        ax.plot(df["epochs"], df["map"], "o-")
        ax.set_xlabel("epochs")
        ax.set_ylabel("MAP")
        ax.set_title(f"{a.title}: MAP vs epochs ({a.bits} bits)")
        ax.grid(alpha=0.3)
    else:
        long = [{"parameter": k, "value": r[k], "epochs": r["epochs"], "map": r["map"]}
                for _, r in df.iterrows() for k in SENSITIVITY_KEYS
                if k in r and pd.notna(r[k])]
        df = pd.DataFrame(long).sort_values(["parameter", "value"])
        df["epochs"] = df["epochs"].astype(int)
        fig, axes = plt.subplots(1, len(SENSITIVITY_KEYS), figsize=(11, 3.2), sharey=True)
        for ax, key in zip(axes, SENSITIVITY_KEYS, strict=True):
            part = df[df["parameter"] == key]
            ax.plot(part["value"], part["map"], "o-")
            ax.set_xscale("log")
            ax.set_xlabel(key.replace("lambda", "λ"))
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("MAP")
        fig.suptitle(f"{a.title}: MAP vs λ ({a.bits} bits)")
    fig.tight_layout()
    for path in (a.png, a.pdf):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.rsplit(".", 1)[1], dpi=150)
    with atomic_path(a.csv) as tmp:
        df.to_csv(tmp, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
