r"""ITQ: iterative quantization (the paper's baseline [7]).

Gong, Lazebnik, Gordo & Perronnin, "Iterative Quantization: A Procrustean Approach to Learning
Binary Codes for Large-Scale Image Retrieval", TPAMI 35(12) 2013. After PCA to
:math:`c` = ``bits`` dimensions, :math:`V = (X - \mathbf{1}\mu^\top) W \in \mathbb{R}^{n\times c}`,
ITQ looks for binary codes :math:`B \in \{-1,1\}^{n\times c}` and an orthogonal rotation
:math:`R` minimising the paper's quantization loss

.. math::
    Q(B, R) = \lVert B - V R \rVert_F^2

by alternating, starting from a random orthogonal :math:`R_0`:

* fix :math:`R`, update :math:`B = \operatorname{sgn}(V R)`;
* fix :math:`B`, solve the orthogonal Procrustes problem: with the SVD
  :math:`B^\top V = S \Omega \hat S^\top`, set :math:`R = \hat S S^\top`.

Each step can only lower :math:`Q`, so the recorded loss is non-increasing. Codes of new points
are :math:`b(x) = \operatorname{sgn}(R^\top W^\top (x - \mu))`.

``state["history"]`` lists ``{"iter": i, "quantization_loss": Q}``: ``iter`` 0 is the random
initial rotation with :math:`B = \operatorname{sgn}(V R_0)`; ``iter`` i >= 1 is
:math:`Q(B_i, R_i)` after the i-th B- and R-update, computed on the training data.

Params (all optional):
    iterations (int): number of alternating B/R updates (default: ``50``, as in the paper).
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
    iter_float_blocks,
    pca,
    resolve_params,
)

__all__ = ["DEFAULTS", "encode", "fit", "quantization_loss", "random_rotation"]

METHOD = "itq"
#: default parameters
DEFAULTS: dict[str, Any] = {"iterations": 50}
#: keys a ``methods`` row may set (checked at start-up by :func:`pipeline.methods.check_params`)
PARAMS: tuple[str, ...] = (*DEFAULTS, "block_rows")


def random_rotation(c: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-distributed random orthogonal (c, c) matrix: QR of a Gaussian matrix, sign-fixed."""
    q, r = np.linalg.qr(rng.standard_normal((c, c)))
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    return q * signs


def quantization_loss(B: np.ndarray, V: np.ndarray, R: np.ndarray) -> float:
    r"""Quantization loss of Gong et al.: :math:`\lVert B - V R\rVert_F^2` with B in {-1, +1}."""
    return float(np.sum((B - V @ R) ** 2))


def _sign(Z: np.ndarray) -> np.ndarray:
    """sgn with ties to -1, as float64 {-1, +1}."""
    return np.where(Z > 0, 1.0, -1.0)


def fit(
    X: np.ndarray,
    Y: np.ndarray | None,
    bits: int,
    params: Mapping[str, Any] | None,
    seed: int,
) -> dict[str, Any]:
    """PCA to ``bits`` dimensions, then ``iterations`` alternating B/R updates; ``Y`` ignored.

    Args:
        X (np.ndarray): training features (n, d).
        Y: auxiliary labels, ignored.
        bits (int): code length c, 1 <= c <= d.
        params (dict): ``iterations`` (default 50), ``block_rows``.
        seed (int): seed of ``np.random.default_rng`` drawing the initial rotation.

    Returns:
        state dict: ``mean`` (d,), ``pca`` (d, c), ``rotation`` (c, c) orthogonal,
        ``projection`` (d, c) = ``pca @ rotation``, ``eigenvalues`` (c,), ``bits``, ``dim``,
        ``iterations``, ``history`` (list of dicts, see the module docstring).

    Raises:
        ValueError: X not 2-D / not finite / fewer than 2 rows, bits < 1 or bits > d,
            iterations not a non-negative int.
    """
    p = resolve_params(params, DEFAULTS, METHOD)
    iterations = p["iterations"]
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)):
        raise ValueError(f"{METHOD}: iterations must be a non-negative int, got {iterations!r}")
    if iterations < 0:
        raise ValueError(f"{METHOD}: iterations must be >= 0, got {iterations}")
    seed = check_seed(seed, METHOD)
    X = check_features(X, METHOD)
    n, d = X.shape
    bits = check_bits(bits, METHOD, max_bits=d)
    rows = block_rows(d, p)
    mean, W, evals = pca(X, bits, METHOD, rows)

    V = np.empty((n, bits), dtype=np.float64)
    for start, block in iter_float_blocks(X, rows, METHOD):
        V[start : start + block.shape[0]] = (block - mean) @ W

    rng = np.random.default_rng(seed)
    R = random_rotation(bits, rng)
    B = _sign(V @ R)
    history = [{"iter": 0, "quantization_loss": quantization_loss(B, V, R)}]
    for i in range(1, int(iterations) + 1):
        B = _sign(V @ R)  # B-update: minimises Q for fixed R
        S, _, Sh_t = np.linalg.svd(B.T @ V)  # B^T V = S Omega Sh^T
        R = Sh_t.T @ S.T  # R-update: orthogonal Procrustes
        history.append({"iter": i, "quantization_loss": quantization_loss(B, V, R)})

    return {
        "method": METHOD,
        "bits": bits,
        "dim": d,
        "iterations": int(iterations),
        "mean": mean,
        "pca": W,
        "eigenvalues": evals,
        "rotation": R,
        "projection": W @ R,
        "history": history,
    }


def encode(
    state: Mapping[str, Any],
    X: np.ndarray,
    Y: np.ndarray | None = None,
    params: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Codes ``sgn(R^T W^T (x - mu))`` as bool (N, bits), True = +1; computed in row blocks."""
    return encode_linear(state, X, params, DEFAULTS, METHOD)
