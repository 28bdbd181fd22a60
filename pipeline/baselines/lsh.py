r"""LSH: random-hyperplane locality-sensitive hashing (the paper's baseline [6]).

The LAGNH paper cites Gionis, Indyk & Motwani, "Similarity Search in High Dimensions via
Hashing", VLDB 1999. For real vectors and Hamming codes the standard instance is the
sign-random-projection family of Charikar, "Similarity Estimation Techniques from Rounding
Algorithms", STOC 2002: for :math:`w \sim \mathcal{N}(0, I_d)`,
:math:`\Pr[h_w(x) = h_w(y)] = 1 - \theta(x, y)/\pi`. Features are centred by the training mean
so that the hyperplanes pass through the data's centre:

.. math::
    b_k(x) = \operatorname{sgn}\big(w_k^\top (x - \mu)\big), \qquad
    w_k \overset{iid}{\sim} \mathcal{N}(0, I_d), \quad k = 1..r

where :math:`\mu` is the training mean (zero when ``center`` is false) and :math:`r` = ``bits``.

Params (all optional):
    center (bool): subtract the training mean before projecting (default: ``True``).
    block_rows (int): rows per encoding block (default: automatic).

Shapes:
    fit: X (n, d) -> state; encode: X (N, d) -> bool (N, bits). ``bits`` may exceed ``d``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.baselines import (
    check_bits,
    check_features,
    check_seed,
    encode_linear,
    resolve_params,
)

__all__ = ["DEFAULTS", "encode", "fit"]

METHOD = "lsh"
#: default parameters
DEFAULTS: dict[str, Any] = {"center": True}
#: keys a ``methods`` row may set (checked at start-up by :func:`pipeline.methods.check_params`)
PARAMS: tuple[str, ...] = (*DEFAULTS, "block_rows")


def fit(
    X: np.ndarray,
    Y: np.ndarray | None,
    bits: int,
    params: Mapping[str, Any] | None,
    seed: int,
) -> dict[str, Any]:
    """Draw ``bits`` Gaussian hyperplanes; ``Y`` is ignored.

    Args:
        X (np.ndarray): training features (n, d), used only for the mean.
        Y: auxiliary labels, ignored.
        bits (int): code length r >= 1.
        params (dict): see the module docstring.
        seed (int): seed of ``np.random.default_rng`` drawing the hyperplanes.

    Returns:
        state dict: ``mean`` (d,), ``projection`` (d, bits) float64, ``bits``, ``dim``.

    Raises:
        ValueError: X not 2-D / not finite, bits < 1, bad params or seed.
    """
    p = resolve_params(params, DEFAULTS, METHOD)
    bits = check_bits(bits, METHOD)
    seed = check_seed(seed, METHOD)
    X = check_features(X, METHOD, min_rows=1)
    d = X.shape[1]
    rng = np.random.default_rng(seed)
    projection = rng.standard_normal((d, bits))
    if p["center"]:
        mean = X.mean(axis=0, dtype=np.float64)
    else:
        mean = np.zeros(d, dtype=np.float64)
    return {
        "method": METHOD,
        "bits": bits,
        "dim": d,
        "mean": mean,
        "projection": projection,
    }


def encode(
    state: Mapping[str, Any],
    X: np.ndarray,
    Y: np.ndarray | None = None,
    params: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Codes ``sgn(W^T (x - mu))`` as bool (N, bits), True = +1; computed in row blocks."""
    return encode_linear(state, X, params, DEFAULTS, METHOD)
