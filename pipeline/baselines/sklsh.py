r"""SKLSH: locality-sensitive binary codes from shift-invariant kernels (baseline [32]).

Raginsky & Lazebnik, "Locality-Sensitive Binary Codes from Shift-Invariant Kernels",
NeurIPS 2009. For a shift-invariant kernel :math:`K(x - y)` with Fourier transform
:math:`P_K` (Bochner), each bit is a random Fourier feature quantised with a random threshold:

.. math::
    h_k(x) = \tfrac12\big[1 + \operatorname{sgn}\big(\cos(w_k^\top x + b_k) + t_k\big)\big],
    \qquad w_k \sim P_K,\; b_k \sim \mathcal{U}[0, 2\pi],\; t_k \sim \mathcal{U}[-1, 1]

so that :math:`\mathbb{E}[\cos(w^\top x + b)\cos(w^\top y + b)] = K(x - y)/2` and the expected
normalised Hamming distance is a function of :math:`K(x-y)` alone. We use the
Gaussian kernel :math:`K(x - y) = \exp(-\gamma\lVert x - y\rVert^2/2)` with
:math:`\gamma = 1/\sigma^2`, whose Fourier transform gives
:math:`w \sim \mathcal{N}(0, \gamma I_d)`.

Bandwidth. ``sigma`` can be set; when it is ``None`` (default) it is chosen from the training
data by a fixed rule: draw ``sigma_sample`` training points at random (all of them if fewer),
and take the mean, over those points, of the Euclidean distance to their ``sigma_knn``-th
nearest neighbour among the sample (``sigma_knn`` is clipped to sample size - 1). This keeps
the kernel local, i.e. :math:`K \approx e^{-1/2}` at a typical neighbourhood radius. The rule
and the value used are stored in the state (``sigma``, ``sigma_rule``).

Params (all optional):
    sigma (float | None): Gaussian kernel width sigma > 0 (default: ``None`` = the rule above).
    sigma_knn (int): neighbour rank of the bandwidth rule (default: ``50``).
    sigma_sample (int): number of training points of the bandwidth rule (default: ``1000``).
    block_rows (int): rows per encoding block (default: automatic).

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
    encode_blocks,
    encode_inputs,
    resolve_params,
)

__all__ = ["DEFAULTS", "encode", "fit", "knn_bandwidth"]

METHOD = "sklsh"
#: default parameters
DEFAULTS: dict[str, Any] = {"sigma": None, "sigma_knn": 50, "sigma_sample": 1000}
#: keys a ``methods`` row may set (checked at start-up by :func:`pipeline.methods.check_params`)
PARAMS: tuple[str, ...] = (*DEFAULTS, "block_rows")


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{METHOD}: {name} must be a positive int, got {value!r}")
    return int(value)


def knn_bandwidth(X: np.ndarray, knn: int, sample: int, rng: np.random.Generator) -> float:
    """Mean distance of ``sample`` random rows of X to their ``knn``-th nearest neighbour.

    Distances are among the sampled rows only (an O(sample^2) computation, in float64).
    ``knn`` is clipped to ``sample - 1``; zero distances (duplicates) are kept as they are, and
    when the result is 0 the mean of the non-zero pairwise distances is used instead.
    """
    n = X.shape[0]
    s = min(n, sample)
    idx = np.sort(rng.choice(n, size=s, replace=False))
    S = np.asarray(X[idx], dtype=np.float64)
    sq = np.einsum("ij,ij->i", S, S)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2.0 * (S @ S.T), 0.0, None)
    np.fill_diagonal(d2, 0.0)
    k = min(knn, s - 1)
    # column 0 of each sorted row is the point itself (distance 0)
    sigma = float(np.sqrt(np.sort(d2, axis=1)[:, k]).mean())
    if sigma <= 0.0:
        nonzero = d2[d2 > 0]
        if nonzero.size == 0:
            raise ValueError(f"{METHOD}: all training points are identical; cannot set sigma")
        sigma = float(np.sqrt(nonzero).mean())
    return sigma


def fit(
    X: np.ndarray,
    Y: np.ndarray | None,
    bits: int,
    params: Mapping[str, Any] | None,
    seed: int,
) -> dict[str, Any]:
    """Draw ``(w_k, b_k, t_k)`` for ``bits`` bits; ``Y`` is ignored.

    Args:
        X (np.ndarray): training features (n, d), used only for the bandwidth rule.
        Y: auxiliary labels, ignored.
        bits (int): code length >= 1.
        params (dict): see the module docstring.
        seed (int): seed of ``np.random.default_rng``; draws w, b, t, then the bandwidth sample.

    Returns:
        state dict: ``projection`` (d, bits) = w / sigma stacked, ``phase`` (bits,) = b,
        ``threshold`` (bits,) = t, ``sigma``, ``sigma_rule``, ``bits``, ``dim``.

    Raises:
        ValueError: X not 2-D / not finite / fewer than 2 rows, bits < 1, sigma <= 0,
            bad sigma_knn / sigma_sample.
    """
    p = resolve_params(params, DEFAULTS, METHOD)
    bits = check_bits(bits, METHOD)
    seed = check_seed(seed, METHOD)
    knn = _positive_int(p["sigma_knn"], "sigma_knn")
    sample = _positive_int(p["sigma_sample"], "sigma_sample")
    if sample < 2:
        raise ValueError(f"{METHOD}: sigma_sample must be >= 2, got {sample}")
    X = check_features(X, METHOD)
    d = X.shape[1]
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((d, bits))  # N(0, I); scaled by sqrt(gamma) = 1/sigma below
    phase = rng.uniform(0.0, 2.0 * np.pi, size=bits)
    threshold = rng.uniform(-1.0, 1.0, size=bits)
    if p["sigma"] is None:
        sigma = knn_bandwidth(X, knn, sample, rng)
        s = min(X.shape[0], sample)
        rule = (
            f"mean distance to the {min(knn, s - 1)}-th nearest neighbour "
            f"among {s} sampled training points"
        )
    else:
        sigma = p["sigma"]
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.number)):
            raise ValueError(f"{METHOD}: sigma must be a positive number or None, got {sigma!r}")
        sigma = float(sigma)
        if not np.isfinite(sigma) or sigma <= 0:
            raise ValueError(f"{METHOD}: sigma must be a positive finite number, got {sigma}")
        rule = "given"
    return {
        "method": METHOD,
        "bits": bits,
        "dim": d,
        "sigma": sigma,
        "sigma_rule": rule,
        "projection": w / sigma,
        "phase": phase,
        "threshold": threshold,
    }


def encode(
    state: Mapping[str, Any],
    X: np.ndarray,
    Y: np.ndarray | None = None,
    params: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Codes ``sgn(cos(w^T x + b) + t)`` as bool (N, bits), True = +1; in row blocks."""
    keys = ("projection", "phase", "threshold")
    p, state, X = encode_inputs(state, X, params, DEFAULTS, METHOD, keys)
    proj = np.asarray(state["projection"], dtype=np.float64)
    phase = np.asarray(state["phase"], dtype=np.float64)
    threshold = np.asarray(state["threshold"], dtype=np.float64)

    def score(B: np.ndarray) -> np.ndarray:
        return np.cos(B @ proj + phase) + threshold

    return encode_blocks(X, int(state["bits"]), score, block_rows(X.shape[1], p), METHOD)
