r"""Random codes: the floor every hashing method must beat.

Each bit of each row is an independent fair coin, :math:`b_{ik} \sim \text{Bernoulli}(0.5)`,
**independent of the features**: ``X`` is only checked for shape (and finiteness, like every
method) and its values never influence the codes. ``fit`` stores the seed; ``encode`` draws the
codes from ``np.random.default_rng([seed, N])``, so the same state and the same number of rows
``N`` always give the same codes (re-encoding is reproducible) and a different seed gives
different codes. The expected MAP of these codes is the chance level of a retrieval set.

Params (all optional):
    block_rows (int): rows drawn per block (default: automatic; the codes do not depend on it).

Shapes:
    fit: X (n, d) -> state; encode: X (N, d) -> bool (N, bits). ``bits`` may exceed ``d``.
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
    encode_inputs,
    iter_float_blocks,
    resolve_params,
)

__all__ = ["DEFAULTS", "encode", "fit"]

METHOD = "random"
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
    """Store the seed and the code length; ``X`` only fixes the feature dimension.

    Returns:
        state dict: ``seed``, ``bits``, ``dim``.

    Raises:
        ValueError: X not 2-D / not finite, bits < 1, bad params or seed.
    """
    resolve_params(params, DEFAULTS, METHOD)
    bits = check_bits(bits, METHOD)
    seed = check_seed(seed, METHOD)
    X = check_features(X, METHOD, min_rows=1)
    return {"method": METHOD, "bits": bits, "dim": X.shape[1], "seed": seed}


def encode(
    state: Mapping[str, Any],
    X: np.ndarray,
    Y: np.ndarray | None = None,
    params: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Bernoulli(0.5) codes bool (N, bits) from ``default_rng([seed, N])``; X values unused."""
    p, state, X = encode_inputs(state, X, params, DEFAULTS, METHOD, ("seed",))
    n, bits = X.shape[0], int(state["bits"])
    rows = block_rows(max(X.shape[1], bits), p)
    for _ in iter_float_blocks(X, rows, METHOD):  # same input checks as every method
        pass
    rng = np.random.default_rng([int(state["seed"]), n])
    out = np.empty((n, bits), dtype=bool)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        # one float64 per bit, drawn row-major: the result does not depend on the block size
        np.less(rng.random((stop - start, bits)), 0.5, out=out[start:stop])
    return out
