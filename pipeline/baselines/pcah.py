r"""PCAH: principal component analysis hashing (the paper's baseline [41]).

Wang, Kumar & Chang, "Semi-Supervised Hashing for Large-Scale Search", TPAMI 2012, use the
unsupervised special case of their projection learning as the PCAH baseline: the projections
are the top-``r`` eigenvectors of the data covariance and each bit thresholds one projection at
zero after centring:

.. math::
    C = \tfrac{1}{n-1} (X - \mathbf{1}\mu^\top)^\top (X - \mathbf{1}\mu^\top) = U\Lambda U^\top,
    \qquad b(x) = \operatorname{sgn}\big(W^\top (x - \mu)\big), \quad W = U_{:, 1..r}

with eigenvalues in decreasing order and each eigenvector's sign fixed so that its
largest-magnitude entry is positive (:func:`pipeline.baselines.fix_signs`). PCAH is
deterministic: the seed is accepted for the common interface but unused.

Params (all optional):
    block_rows (int): rows per block (default: automatic).

Shapes:
    fit: X (n, d) -> state; encode: X (N, d) -> bool (N, bits), ``bits <= d``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.baselines import (
    block_rows,
    check_bits,
    check_features,
    check_seed,
    encode_linear,
    pca,
    resolve_params,
)

__all__ = ["DEFAULTS", "encode", "fit"]

METHOD = "pcah"
#: default parameters (none besides the common ``block_rows``)
DEFAULTS: dict[str, Any] = {}
#: keys a ``methods`` row may set (checked at start-up by :func:`pipeline.methods.check_params`)
PARAMS: tuple[str, ...] = (*DEFAULTS, "block_rows")


def fit(
    X: np.ndarray,
    Y: np.ndarray | None,
    bits: int,
    params: Mapping[str, Any] | None,
    seed: int,
) -> dict[str, Any]:
    """PCA of the training features to ``bits`` dimensions; ``Y`` and ``seed`` are unused.

    Returns:
        state dict: ``mean`` (d,), ``projection`` (d, bits) float64 principal directions,
        ``eigenvalues`` (bits,), ``bits``, ``dim``.

    Raises:
        ValueError: X not 2-D / not finite / fewer than 2 rows, bits < 1 or bits > d.
    """
    p = resolve_params(params, DEFAULTS, METHOD)
    check_seed(seed, METHOD)
    X = check_features(X, METHOD)
    d = X.shape[1]
    bits = check_bits(bits, METHOD, max_bits=d)
    mean, components, evals = pca(X, bits, METHOD, block_rows(d, p))
    return {
        "method": METHOD,
        "bits": bits,
        "dim": d,
        "mean": mean,
        "projection": components,
        "eigenvalues": evals,
    }


def encode(
    state: Mapping[str, Any],
    X: np.ndarray,
    Y: np.ndarray | None = None,
    params: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Codes ``sgn(W^T (x - mu))`` as bool (N, bits), True = +1; computed in row blocks."""
    return encode_linear(state, X, params, DEFAULTS, METHOD)
