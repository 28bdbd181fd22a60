r"""Auxiliary bits repeated, then ITQ bits: the trivial combination of LAGNH's two inputs.

At code length :math:`r`, with :math:`c` auxiliary classes, the code of image :math:`i` is

.. math::
    \mathbf{b}_i = [\,\underbrace{\mathbf{y}_i, \dots, \mathbf{y}_i}_{k\ \text{times}},\;
    \mathrm{ITQ}_{r - kc}(\mathbf{x}_i)\,]

so the Hamming distance is :math:`k` times the number of differing auxiliary labels plus the
ITQ distance of the features: images rank by auxiliary agreement first and by visual similarity
second, with :math:`k` setting how strongly. ITQ (:mod:`pipeline.baselines.itq`) is fitted with
:math:`r - kc` bits on all training images; :math:`k = r/c` leaves no ITQ bits.

**Choosing k.** The candidates are :math:`k = 0, 1, \dots, \lfloor r/c \rfloor`. Where
:math:`c > r` (MS COCO's 80 classes at 16–64 bits) the auxiliary vector does not fit once; the
nearest construction is then :math:`k = 1` over the :math:`r` classes most frequent among the
training images' auxiliary labels (the others dropped), against :math:`k = 0` (ITQ alone).
Candidates that would need more ITQ bits than the features have dimensions are left out.
``repeats: validate`` (default) picks the candidate of highest MAP on a validation split carved,
seeded, from the training images (:func:`pipeline.validation.validation_split`; candidates fitted
on the rest, relevance from those images' ground-truth labels, ties to the smaller :math:`k`);
an integer fixes :math:`k`. The query and retrieval images are never seen.

Params (all optional):
    repeats (int | "validate"): :math:`k`, or ``"validate"`` (default).
    val_query_fraction (float): share of training images used as validation queries (0.2).
    val_database_fraction (float): share used as the validation database (0.4).
    topk (int): K of the validation MAP@K, capped at the validation database size (1000).
    iterations (int): ITQ iterations (50).

Shapes:
    fit: X (n, d), Y (n, c), labels (n, L) -> state; encode: X (N, d), Y (N, c) -> bool (N, r).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.baselines import check_bits, check_features, check_seed, itq, resolve_params
from pipeline.baselines.aux import check_aux
from pipeline.validation import validation_map, validation_split

__all__ = ["DEFAULTS", "candidates", "compose", "encode", "fit"]

METHOD = "aux_itq"
#: default parameters
DEFAULTS: dict[str, Any] = {
    "repeats": "validate",
    "val_query_fraction": 0.2,
    "val_database_fraction": 0.4,
    "topk": 1000,
    "iterations": 50,
}
#: ``fit`` takes the training images' ground-truth labels (validation relevance only)
USES_TRAIN_LABELS = True
#: parameters a row may set (checked when the workflow starts)
PARAMS: tuple[str, ...] = (*DEFAULTS, "block_rows")



def uses_aux(params: Mapping[str, Any]) -> bool:
    """This method reads the auxiliary labels (the report's caption names such rows)."""
    return True

def candidates(bits: int, Y: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Candidate ``(k, classes)``: ``k`` repetitions of the auxiliary columns ``classes``.

    Example (10 classes): at 16 bits k = 0 or 1 over all classes; at 4 bits k = 0, or k = 1 over
    the 4 most frequent classes.
        >>> Y = np.eye(10, dtype=bool)[[0, 0, 0, 1, 1, 2, 3, 4, 5, 6]]
        >>> [(k, len(c)) for k, c in candidates(16, Y)]
        [(0, 10), (1, 10)]
        >>> [(k, c.tolist()) for k, c in candidates(4, Y)]
        [(0, []), (1, [0, 1, 2, 3])]
    """
    c = Y.shape[1]
    if c <= bits:
        every = np.arange(c)
        return [(k, every) for k in range(bits // c + 1)]
    freq = Y.sum(axis=0)
    top = np.sort(np.argsort(-freq, kind="stable")[:bits])
    return [(0, np.arange(0)), (1, top)]


def compose(Y: np.ndarray, classes: np.ndarray, k: int, itq_codes: np.ndarray | None
            ) -> np.ndarray:
    """``[Y[:, classes]] * k`` then the ITQ bits, as bool (N, k * len(classes) + itq bits).

    Example:
        >>> compose(np.array([[1, 0]], bool), np.arange(2), 2, np.array([[True]])).astype(int)
        array([[1, 0, 1, 0, 1]])
    """
    parts = [Y[:, classes]] * k
    if itq_codes is not None:
        parts.append(itq_codes)
    return np.concatenate(parts, axis=1)


def _itq(X: np.ndarray, bits: int, iterations: int, seed: int) -> dict[str, Any] | None:
    if bits == 0:
        return None
    state = itq.fit(X, None, bits, {"iterations": iterations}, seed)
    state.pop("history", None)
    return state


def _codes(state: dict[str, Any] | None, X: np.ndarray) -> np.ndarray | None:
    return None if state is None else itq.encode(state, X)


def fit(
    X: np.ndarray,
    Y: np.ndarray | None,
    bits: int,
    params: Mapping[str, Any] | None,
    seed: int,
    labels: np.ndarray | None = None,
) -> dict[str, Any]:
    """Choose :math:`k` (see the module doc), then fit ITQ with :math:`r - kc` bits on all of X.

    Args:
        labels: ground-truth labels (n, L) of the training images, used only as the validation
            split's relevance; required when ``repeats`` is ``"validate"``.

    Returns:
        state dict: ``repeats`` k, ``classes`` (the auxiliary columns repeated), ``itq`` (the ITQ
        state, or None), ``validation`` (one ``{"repeats", "classes", "map"}`` per candidate,
        empty when k was given), ``selected`` (k, the auxiliary classes and ITQ bits it
        leaves, where k came from and its validation MAP), ``n_classes``, ``bits``, ``dim``,
        ``code_bits``.
    """
    p = resolve_params(params, DEFAULTS, METHOD)
    bits = check_bits(bits, METHOD)
    seed = check_seed(seed, METHOD)
    X = check_features(X, METHOD)
    Yb = check_aux(Y, X.shape[0], METHOD)
    cands = [(k, cl) for k, cl in candidates(bits, Yb) if bits - k * len(cl) <= X.shape[1]]
    if not cands:  # ITQ needs at most d bits
        raise ValueError(f"{METHOD}: at {bits} bits every candidate needs more ITQ bits than "
                         f"the {X.shape[1]} feature dimensions")
    table: list[dict[str, Any]] = []
    if p["repeats"] == "validate":
        if labels is None:
            raise ValueError(f"{METHOD}: repeats 'validate' needs the training images' labels; "
                             "give repeats an integer to fix k")
        labels = np.asarray(labels)
        if labels.shape[0] != X.shape[0]:
            raise ValueError(f"{METHOD}: labels has {labels.shape[0]} rows, X has {X.shape[0]}")
        vs = validation_split(X.shape[0], p["val_query_fraction"], p["val_database_fraction"],
                              seed)
        for k, classes in cands:
            model = _itq(X[vs.rest], bits - k * len(classes), p["iterations"], seed)
            q = compose(Yb[vs.query], classes, k, _codes(model, X[vs.query]))
            db = compose(Yb[vs.database], classes, k, _codes(model, X[vs.database]))
            table.append({"repeats": k, "classes": len(classes),
                          "map": validation_map(q, db, labels[vs.query], labels[vs.database],
                                                p["topk"])})
        best = max(range(len(cands)), key=lambda i: (round(table[i]["map"], 10), -i))
    else:
        k = p["repeats"]
        valid = [i for i, (kk, _) in enumerate(cands) if kk == k]
        if isinstance(k, bool) or not valid:
            raise ValueError(f"{METHOD}: repeats must be 'validate' or one of "
                             f"{[kk for kk, _ in cands]} at {bits} bits with {Yb.shape[1]} "
                             f"classes, got {k!r}")
        best = valid[0]
    k, classes = cands[best]
    selected = {"repeats": int(k), "aux_classes": int(len(classes)),
                "itq_bits": int(bits - k * len(classes)),
                "source": "validation" if table else "config",
                "validation_map": table[best]["map"] if table else None}
    return {
        "method": METHOD,
        "bits": bits,
        "dim": X.shape[1],
        "n_classes": Yb.shape[1],
        "code_bits": bits,
        "repeats": int(k),
        "classes": classes,
        "itq": _itq(X, bits - k * len(classes), p["iterations"], seed),
        "validation": table,
        "selected": selected,
    }


def encode(
    state: Mapping[str, Any],
    X: np.ndarray,
    Y: np.ndarray | None = None,
    params: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """``k`` copies of the chosen auxiliary columns, then the ITQ bits: bool (N, r)."""
    if not isinstance(state, Mapping) or state.get("method") != METHOD:
        raise ValueError(f"{METHOD}: state must be the dict returned by {METHOD}.fit()")
    X = np.asarray(X)
    Yb = check_aux(Y, X.shape[0], METHOD, int(state["n_classes"]))
    return compose(Yb, np.asarray(state["classes"]), int(state["repeats"]),
                   _codes(state["itq"], X))
