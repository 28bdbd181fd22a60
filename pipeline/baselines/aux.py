r"""The auxiliary labels themselves as the code: what the detector alone gives.

LAGNH's second input is the multi-hot vector :math:`\mathbf{y}_i \in \{0, 1\}^c` of auxiliary
labels (Section 3, "Preparation"). This reference row hashes an image to that vector, unchanged:
:math:`b_{ik} = +1 \iff y_{ik} = 1`, a code of :math:`c` bits whatever the table's column, so
Hamming ranking orders the retrieval set by how many auxiliary labels differ. It shows every
column the same value, like the ``float`` reference. Ties are broken as for every method (stable,
by retrieval index).

``fit`` stores :math:`c` and the feature dimension; ``encode`` reads only ``Y``. The state's
``code_bits`` (:math:`c`) tells the encode stage that the code is :math:`c` bits wide, not the
column's :math:`r`.

Params (all optional): ``block_rows`` (unused; accepted as by every method).

Shapes:
    fit: X (n, d), Y (n, c) -> state; encode: Y (N, c) -> bool (N, c).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.baselines import check_bits, check_features, encode_inputs, resolve_params

__all__ = ["DEFAULTS", "check_aux", "encode", "fit"]

METHOD = "aux"
#: default parameters (none besides the common ``block_rows``)
DEFAULTS: dict[str, Any] = {}
#: parameters a row may set (checked when the workflow starts)
PARAMS: tuple[str, ...] = (*DEFAULTS, "block_rows")



def uses_aux(params: Mapping[str, Any]) -> bool:
    """This method reads the auxiliary labels (the report's caption names such rows)."""
    return True

def check_aux(Y: Any, n: int, method: str, c: int | None = None) -> np.ndarray:
    """Validate auxiliary labels: 2-D, ``n`` rows, 0/1 values (and ``c`` columns when given).

    Returns them as ``bool``.

    Example:
        >>> check_aux(np.array([[0, 1], [1, 1]], np.uint8), 2, "aux").tolist()
        [[False, True], [True, True]]
    """
    if Y is None:
        raise ValueError(f"{method}: needs the auxiliary labels Y (aux.h5's aux_labels)")
    Y = np.asarray(Y)
    if Y.ndim != 2 or Y.shape[0] != n or Y.shape[1] < 1:
        raise ValueError(f"{method}: Y must have shape ({n}, c) with c >= 1, got {Y.shape}")
    if c is not None and Y.shape[1] != c:
        raise ValueError(f"{method}: Y has {Y.shape[1]} classes, the model was fitted on {c}")
    if not np.isin(Y, (0, 1)).all():
        raise ValueError(f"{method}: Y must hold 0/1 indicators")
    return Y.astype(bool)


def fit(
    X: np.ndarray,
    Y: np.ndarray | None,
    bits: int,
    params: Mapping[str, Any] | None,
    seed: int,
) -> dict[str, Any]:
    """Store the number of auxiliary classes :math:`c` (the code's width) and the feature size.

    ``bits`` (the table's column) is recorded but does not change the code.
    """
    resolve_params(params, DEFAULTS, METHOD)
    bits = check_bits(bits, METHOD)
    X = check_features(X, METHOD, min_rows=1)
    c = check_aux(Y, X.shape[0], METHOD).shape[1]
    return {"method": METHOD, "bits": bits, "dim": X.shape[1], "n_classes": c, "code_bits": c}


def encode(
    state: Mapping[str, Any],
    X: np.ndarray,
    Y: np.ndarray | None = None,
    params: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """The auxiliary labels as bool (N, c), True = +1.

    Example:
        >>> state = fit(np.zeros((2, 3)), np.array([[1, 0], [0, 1]]), 16, {}, 0)
        >>> encode(state, np.zeros((1, 3)), np.array([[1, 1]])).tolist()
        [[True, True]]
    """
    _, state, X = encode_inputs(state, X, params, DEFAULTS, METHOD, ("n_classes",))
    return check_aux(Y, X.shape[0], METHOD, int(state["n_classes"]))
