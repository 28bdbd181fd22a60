"""LAGNH settings chosen on a validation split of the training images, and the paper's
parameter figures (Figure 3: MAP vs epochs; Figure 4: MAP vs lambda1..3) on the real split.

A *grid* (config ``tune.grid``) maps LAGNH keys to lists of values. Its ``epochs`` list, if any,
is not a grid axis that costs trainings: every other combination (a *point*) is trained once,
for the largest number of epochs, and scored at each listed epoch from states saved along the
run (:func:`pipeline.lagnh.method.fit_checkpoints`). So a grid implies ``prod(len(values))``
trainings over its non-epoch keys (:func:`n_trainings`).

Tuning (:func:`load_training_rows`, :func:`score_point`) reads the *training* rows of split,
features and aux labels only, by index: the query and retrieval rows are never loaded. A seeded
draw (:func:`pipeline.validation.validation_split`) carves them into validation queries, a
validation database and the rest the point is trained on. Relevance on the validation split is
``labels`` (the training images' ground truth: the paper's cross-validation, Sec. 4.2; default,
because the auxiliary labels would reward a code that merely reproduces them) or ``aux`` (the
detector's labels: label-free, for a setting without any annotated image).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from pipeline.data.split_table import QUERY, RETRIEVAL, TRAIN
from pipeline.validation import validation_map, validation_split

#: sensitivity figure: the lambdas varied one at a time (paper Figure 4)
SENSITIVITY_KEYS = ("lambda1", "lambda2", "lambda3")


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The grid's combinations of non-epoch keys, in a fixed order (sorted keys, listed values).

    Example:
        >>> grid_points({"lambda1": [1, 10], "epochs": [5, 10], "lr": [0.001]})
        [{'lambda1': 1, 'lr': 0.001}, {'lambda1': 10, 'lr': 0.001}]
        >>> grid_points({"epochs": [5]})
        [{}]
    """
    keys = sorted(k for k in grid if k != "epochs")
    return [dict(zip(keys, values, strict=True))
            for values in itertools.product(*(grid[k] for k in keys))]


def grid_epochs(grid: Mapping[str, Sequence[Any]], base_epochs: int) -> list[int]:
    """Epoch counts scored per point: the grid's ``epochs``, else the configured one."""
    return sorted({int(e) for e in grid.get("epochs", [base_epochs])})


def n_trainings(grid: Mapping[str, Sequence[Any]]) -> int:
    """Trainings a grid implies: one per point (epochs come from checkpoints of one run)."""
    return len(grid_points(grid))


def figure_points(figure: str, figures: Mapping[str, Any], base_epochs: int
                  ) -> dict[str, tuple[dict[str, Any], list[int]]]:
    """Point name -> (LAGNH overrides, epochs scored) of a figure: ``epochs`` is one run saved
    at every listed epoch; ``sensitivity`` one run per (lambda, value) at
    ``sensitivity_epochs`` (default: the configured epochs).
    """
    if figure == "epochs":
        return {"run": ({}, sorted({int(e) for e in figures["epochs"]}))}
    if figure == "sensitivity":
        epochs = int(figures.get("sensitivity_epochs") or base_epochs)
        return {f"{key}_{i}": ({key: float(v)}, [epochs])
                for key in SENSITIVITY_KEYS for i, v in enumerate(figures["lambdas"])}
    raise ValueError(f"unknown figure '{figure}'; known: epochs, sensitivity")


def _rows(path: str, name: str, index: np.ndarray) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[name][index] if len(index) else f[name][:0]


def load_training_rows(split: str, features: str, aux: str, labels: bool = True
                       ) -> dict[str, np.ndarray]:
    """Features, aux labels (and ground truth) of the training rows with valid features.

    Only the ``ids``/``split``/``valid`` columns are read whole; features, aux and labels are
    read at the training indices only, so query and retrieval rows never reach memory.
    """
    with h5py.File(split, "r") as f:
        ids, part = f["ids"][:], f["split"][:]
    with h5py.File(features, "r") as f:
        f_ids, valid = f["ids"][:], f["valid"][:].astype(bool)
    with h5py.File(aux, "r") as f:
        a_ids = f["ids"][:]
    if not (np.array_equal(ids, f_ids) and np.array_equal(ids, a_ids)):
        raise ValueError(f"{split}, {features} and {aux} do not hold the same images in order")
    index = np.flatnonzero((part == TRAIN) & valid)
    if len(index) < 3:
        raise ValueError(f"{split}: {len(index)} training images with valid features; need 3")
    out = {"X": _rows(features, "features", index).astype(np.float32),
           "Y": _rows(aux, "aux_labels", index)}
    if labels:
        out["L"] = _rows(split, "labels", index)
    return out


def _fit(X, Y, bits, params, seed, epochs):
    from pipeline.lagnh import method  # torch only where training happens

    return method.fit_checkpoints(X, Y, bits, params, seed, epochs)


def _encode(state, X, Y, params):
    from pipeline.lagnh import method

    return method.encode(state, X, Y, params)


def score_point(data: Mapping[str, np.ndarray], bits: int, params: dict[str, Any],
                epochs: list[int], seed: int, tune: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Validation MAP of one grid point at each of ``epochs`` (one training on the rest).

    ``tune``: ``relevance`` (labels|aux), ``query_fraction``, ``database_fraction``, ``seed``
    (the split's draw), ``topk`` (int or "all").
    """
    X, Y = data["X"], data["Y"]
    rel = data["L"] if tune["relevance"] == "labels" else Y
    vs = validation_split(len(X), tune["query_fraction"], tune["database_fraction"],
                          tune["seed"])
    topk = None if tune["topk"] == "all" else int(tune["topk"])
    states = _fit(X[vs.rest], Y[vs.rest], bits, params, seed, epochs)
    rows = []
    for epoch, state in states.items():
        q = _encode(state, X[vs.query], Y[vs.query], params)
        db = _encode(state, X[vs.database], Y[vs.database], params)
        rows.append({"epochs": epoch,
                     "map": validation_map(q, db, rel[vs.query], rel[vs.database], topk)})
    return rows


def score_point_test(split: str, features: str, aux: str, bits: int, params: dict[str, Any],
                     epochs: list[int], seed: int, topk: int | str) -> list[dict[str, Any]]:
    """MAP on the real split (query vs retrieval, ground truth) of a model trained on all the
    training images, at each of ``epochs``: the figures' points (not a selection)."""
    from pipeline.stage_inputs import load_inputs

    inp = load_inputs(split, features, aux)
    labels = _rows(split, "labels", np.arange(len(inp.ids)))
    train = (inp.split == TRAIN) & inp.valid
    q = (inp.split == QUERY) & inp.valid
    db = (inp.split == RETRIEVAL) & inp.valid
    states = _fit(inp.features[train], inp.aux[train], bits, params, seed, epochs)
    k = None if topk == "all" else int(topk)
    rows = []
    for epoch, state in states.items():
        cq = _encode(state, inp.features[q], inp.aux[q], params)
        cdb = _encode(state, inp.features[db], inp.aux[db], params)
        rows.append({"epochs": epoch,
                     "map": validation_map(cq, cdb, labels[q], labels[db], k)})
    return rows


def select(points: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The best (point, epochs) by validation MAP; ties go to the earlier point, then fewer
    epochs. ``points``: the tune_point JSONs (``params``, ``rows``)."""
    best = None
    for i, p in enumerate(points):
        for r in p["rows"]:
            key = (-r["map"], i, r["epochs"])
            if best is None or key < best[0]:
                best = (key, {**p["params"], "epochs": int(r["epochs"])}, r["map"])
    if best is None:
        raise ValueError("tune: no scored grid point")
    return {"selected": best[1], "val_map": best[2]}


def settings_source(params: Mapping[str, Any], tuned: Mapping[str, Any] | None
                    ) -> dict[str, str]:
    """Where each training setting came from: ``config`` or ``tuning (val MAP x)``."""
    if not tuned:
        return {k: "config" for k in sorted(params)}
    picked = tuned["selected"]
    tag = f"tuning (validation MAP {tuned['val_map']:.4f}, relevance {tuned['relevance']})"
    return {k: (tag if k in picked else "config") for k in sorted(set(params) | set(picked))}


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def figure_table(figure: str, paths: Sequence[str | Path]) -> pd.DataFrame:
    """The figure_point JSONs as one table: ``epochs, map`` for Figure 3 (by epochs);
    ``parameter, value, epochs, map`` for Figure 4 (by parameter, then value).

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> for name, v, m in (("a", 1.0, 0.5), ("b", 0.1, 0.4)):
        ...     with open(os.path.join(d, name), "w") as f:
        ...         _ = f.write(json.dumps({"params": {"lambda1": v},
        ...                                "rows": [{"epochs": 7, "map": m}]}))
        >>> figure_table("sensitivity", [os.path.join(d, "a"), os.path.join(d, "b")])
          parameter  value  epochs  map
        0   lambda1    0.1       7  0.4
        1   lambda1    1.0       7  0.5
    """
    rows = []
    for path in paths:
        point = read_json(path)
        varied = point["params"]
        for r in point["rows"]:
            if figure == "epochs":
                rows.append({"epochs": int(r["epochs"]), "map": r["map"]})
            else:
                rows.extend({"parameter": k, "value": float(varied[k]),
                             "epochs": int(r["epochs"]), "map": r["map"]}
                            for k in SENSITIVITY_KEYS if k in varied)
    order = ["epochs"] if figure == "epochs" else ["parameter", "value"]
    return pd.DataFrame(rows).sort_values(order).reset_index(drop=True)
