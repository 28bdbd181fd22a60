r"""SGH: scalable graph hashing with feature transformation (the paper's baseline [10]).

Jiang & Li, "Scalable Graph Hashing with Feature Transformation", IJCAI 2015
(https://www.ijcai.org/Abstract/15/318).

Similarity and objective. With :math:`S_{ij} = e^{-\lVert x_i - x_j\rVert^2/\rho}` and
:math:`\tilde S = 2S - 1 \in (-1, 1]`, SGH learns kernel hash functions
:math:`h_t(x) = \operatorname{sgn}(K(x) w_t)` minimising

.. math::
    \min_W \lVert c\tilde S - \operatorname{sgn}(K(X)W^\top)\operatorname{sgn}(K(X)W^\top)^\top
    \rVert_F^2 \quad \text{s.t.}\; W K(X)^\top K(X) W^\top = I

with :math:`c` = ``bits`` and centred kernel features on :math:`m` anchors :math:`a_j` drawn
from the training set,
:math:`K(x)_j = \phi(x, a_j) - \frac1n\sum_i \phi(x_i, a_j)`,
:math:`\phi(x, a) = \exp(-\lVert x-a\rVert^2 / 2\sigma^2)`.

Feature transformation. Writing
:math:`S_{ij} = e^{-\lVert x_i\rVert^2/\rho} e^{-\lVert x_j\rVert^2/\rho} e^{2x_i^\top x_j/\rho}`
and approximating :math:`e^u` on :math:`[-1, 1]` by the line through its end points,
:math:`e^u \approx \frac{e^2-1}{2e}u + \frac{e^2+1}{2e}`, gives
:math:`\tilde S_{ij} \approx P(x_i)^\top Q(x_j)` with

.. math::
    P(x) = \Big[\sqrt{\tfrac{2(e^2-1)}{e\rho}}\, e^{-\lVert x\rVert^2/\rho} x;\;
    \sqrt{\tfrac{e^2+1}{e}}\, e^{-\lVert x\rVert^2/\rho};\; 1\Big], \quad
    Q(x) = \Big[\sqrt{\tfrac{2(e^2-1)}{e\rho}}\, e^{-\lVert x\rVert^2/\rho} x;\;
    \sqrt{\tfrac{e^2+1}{e}}\, e^{-\lVert x\rVert^2/\rho};\; -1\Big]

valid when :math:`2x_i^\top x_j/\rho \in [-1, 1]`, i.e. :math:`\rho \ge 2\max_i\lVert x_i
\rVert^2`. Hence :math:`K^\top \tilde S K \approx (K^\top P)(K^\top Q)^\top` is an
:math:`m\times m` matrix computed in :math:`O(nmd)` without any :math:`n\times n` matrix.

Sequential (bit-wise) learning. With the residual
:math:`R_t = c\tilde S - \sum_{\tau < t} b_\tau b_\tau^\top`,
:math:`b_\tau = \operatorname{sgn}(K w_\tau)`, bit :math:`t` relaxes
:math:`\max_w \operatorname{sgn}(Kw)^\top R_{t} \operatorname{sgn}(Kw)` to the generalised
eigenproblem

.. math::
    K^\top R_t K\, w = \lambda\, K^\top K\, w \quad \text{(largest } \lambda\text{)},
    \qquad K^\top R_{t+1} K = K^\top R_t K - (K^\top b_t)(K^\top b_t)^\top.

After the greedy pass, ``refine_passes`` further passes re-learn each bit :math:`t` against the
residual of all the other bits (add :math:`(K^\top b_t)(K^\top b_t)^\top` back, re-solve,
subtract the new one), the paper's refinement of the greedy pass; ``refine_passes = 0``
gives the purely greedy pass. The generalised problem is
solved by whitening with :math:`(K^\top K)^{-1/2}` restricted to eigenvalues above
``1e-10`` times the largest (kernel matrices are often numerically rank-deficient); each
:math:`w_t` is sign-normalised (largest-magnitude entry positive), which flips a whole bit and
leaves the Hamming geometry unchanged.

Implementation choices (documented defaults):
    * features are centred by the training mean :math:`\mu` first; this leaves :math:`S`
      unchanged (it depends on distances only) and makes the bound on :math:`\rho` tight;
    * ``rho = None`` uses :math:`\rho = 2\max_i\lVert x_i - \mu\rVert^2`, the smallest value
      for which the approximation above is valid;
    * ``sigma = None`` uses the mean Euclidean distance between the training points and the
      anchors (a common choice for anchor kernels);
    * ``anchors`` = 300 kernel bases (m in the paper), or n when there are fewer training points,
      drawn uniformly without replacement with ``np.random.default_rng(seed)``.

Params (all optional):
    anchors (int): number of kernel bases m (default: ``300``; n if n < m).
    rho (float | None): similarity scale rho (default: ``None`` = rule above).
    sigma (float | None): RBF kernel width (default: ``None`` = rule above).
    refine_passes (int): extra passes re-learning every bit (default: ``1``).
    block_rows (int): rows per block (default: automatic).

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
    fix_signs,
    iter_float_blocks,
    resolve_params,
)

__all__ = ["DEFAULTS", "encode", "feature_transform", "fit", "kernel_features"]

METHOD = "sgh"
#: default parameters
DEFAULTS: dict[str, Any] = {"anchors": 300, "rho": None, "sigma": None, "refine_passes": 1}
#: keys a ``methods`` row may set (checked at start-up by :func:`pipeline.methods.check_params`)
PARAMS: tuple[str, ...] = (*DEFAULTS, "block_rows")
_EIG_RTOL = 1e-10


def _positive_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{METHOD}: {name} must be a positive number or None, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{METHOD}: {name} must be a positive finite number, got {value}")
    return value


def _int_at_least(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{METHOD}: {name} must be an int >= {low}, got {value!r}")
    return int(value)


def _sq_dists(B: np.ndarray, anchors: np.ndarray, anchor_sq: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (rows, m), clipped at 0."""
    d2 = np.einsum("ij,ij->i", B, B)[:, None] + anchor_sq[None, :] - 2.0 * (B @ anchors.T)
    return np.clip(d2, 0.0, None, out=d2)


def kernel_features(
    B: np.ndarray,
    anchors: np.ndarray,
    sigma: float,
    kernel_mean: np.ndarray,
    anchor_sq: np.ndarray | None = None,
) -> np.ndarray:
    r"""Centred kernel features :math:`K(x)_j = \phi(x, a_j) - \bar\phi_j` of a float64 block."""
    if anchor_sq is None:
        anchor_sq = np.einsum("ij,ij->i", anchors, anchors)
    d2 = _sq_dists(B, anchors, anchor_sq)
    return np.exp(d2 / (-2.0 * sigma**2)) - kernel_mean


def feature_transform(Xc: np.ndarray, rho: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Feature transformation ``(P(X), Q(X))`` of centred rows ``Xc`` (n, d): two (n, d + 2).

    :math:`P(x_i)^\top Q(x_j)` approximates :math:`2e^{-\lVert x_i-x_j\rVert^2/\rho} - 1`.
    """
    e = np.e
    scale = np.exp(-np.einsum("ij,ij->i", Xc, Xc) / rho)[:, None]
    body = np.hstack(
        [np.sqrt(2.0 * (e**2 - 1.0) / (e * rho)) * scale * Xc, np.sqrt((e**2 + 1.0) / e) * scale]
    )
    ones = np.ones((Xc.shape[0], 1))
    return np.hstack([body, ones]), np.hstack([body, -ones])


def _whitener(Z: np.ndarray) -> np.ndarray:
    """T with T^T Z T = I on the numerically non-null eigenspace of the PSD matrix Z."""
    evals, evecs = np.linalg.eigh((Z + Z.T) / 2.0)
    keep = evals > _EIG_RTOL * max(evals.max(), 0.0)
    if not keep.any():
        raise ValueError(f"{METHOD}: the kernel features are all zero; check sigma and the data")
    return evecs[:, keep] / np.sqrt(evals[keep])


def _top_direction(G: np.ndarray) -> np.ndarray:
    """Unit eigenvector of the largest eigenvalue of the symmetric matrix G."""
    _, evecs = np.linalg.eigh((G + G.T) / 2.0)
    return evecs[:, -1]


def fit(
    X: np.ndarray,
    Y: np.ndarray | None,
    bits: int,
    params: Mapping[str, Any] | None,
    seed: int,
) -> dict[str, Any]:
    """Learn ``bits`` kernel hash functions by SGH's sequential learning; ``Y`` is ignored.

    Args:
        X (np.ndarray): training features (n, d).
        Y: auxiliary labels, ignored.
        bits (int): code length c >= 1.
        params (dict): see the module docstring.
        seed (int): seed of ``np.random.default_rng`` choosing the anchors.

    Returns:
        state dict: ``anchors`` (m, d), ``sigma``, ``rho``, ``kernel_mean`` (m,),
        ``weights`` (m, bits) (column t is w_t), ``refine_passes``, ``bits``, ``dim``.

    Raises:
        ValueError: X not 2-D / not finite / fewer than 2 rows, bits < 1, bad params.
    """
    p = resolve_params(params, DEFAULTS, METHOD)
    bits = check_bits(bits, METHOD)
    seed = check_seed(seed, METHOD)
    n_anchors = _int_at_least(p["anchors"], "anchors", 1)
    refine = _int_at_least(p["refine_passes"], "refine_passes", 0)
    X = check_features(X, METHOD)
    n, d = X.shape
    rows = block_rows(max(d, n_anchors), p)
    rng = np.random.default_rng(seed)
    m = min(n_anchors, n)
    anchors = np.asarray(X[np.sort(rng.choice(n, size=m, replace=False))], dtype=np.float64)
    anchor_sq = np.einsum("ij,ij->i", anchors, anchors)

    # pass 1: training mean, max squared norm after centring, squared distances to the anchors
    mean = X.mean(axis=0, dtype=np.float64)
    K = np.empty((n, m), dtype=np.float64)
    max_sq = 0.0
    for start, block in iter_float_blocks(X, rows, METHOD):
        K[start : start + block.shape[0]] = _sq_dists(block, anchors, anchor_sq)
        c = block - mean
        max_sq = max(max_sq, float(np.einsum("ij,ij->i", c, c).max()))
    if p["sigma"] is None:
        sigma = float(np.sqrt(K).mean())
        if sigma <= 0:
            raise ValueError(f"{METHOD}: all training points are identical; cannot set sigma")
    else:
        sigma = _positive_number(p["sigma"], "sigma")
    if p["rho"] is None:
        if max_sq <= 0:
            raise ValueError(f"{METHOD}: all training points are identical; cannot set rho")
        rho = 2.0 * max_sq
    else:
        rho = _positive_number(p["rho"], "rho")
    np.exp(K / (-2.0 * sigma**2), out=K)
    kernel_mean = K.mean(axis=0)
    K -= kernel_mean

    # pass 2: K^T P and K^T Q through the feature transformation, block-wise
    KtP = np.zeros((m, d + 2))
    KtQ = np.zeros((m, d + 2))
    for start, block in iter_float_blocks(X, rows, METHOD):
        Pb, Qb = feature_transform(block - mean, rho)
        Kb = K[start : start + block.shape[0]]
        KtP += Kb.T @ Pb
        KtQ += Kb.T @ Qb
    T = _whitener(K.T @ K)  # w = T y turns K^T R K w = lambda K^T K w into G y = lambda y
    G = bits * ((T.T @ KtP) @ (KtQ.T @ T))  # T^T K^T (c S~) K T

    W = np.zeros((m, bits))
    U = np.zeros((T.shape[1], bits))  # column t: T^T K^T sgn(K w_t)
    for _ in range(1 + refine):
        for t in range(bits):
            G += np.outer(U[:, t], U[:, t])  # residual without bit t (no-op in the first pass)
            y = _top_direction(G)
            w = fix_signs((T @ y)[:, None])[:, 0]
            W[:, t] = w
            U[:, t] = T.T @ (K.T @ np.where(K @ w > 0, 1.0, -1.0))
            G -= np.outer(U[:, t], U[:, t])

    return {
        "method": METHOD,
        "bits": bits,
        "dim": d,
        "anchors": anchors,
        "sigma": sigma,
        "rho": rho,
        "kernel_mean": kernel_mean,
        "weights": W,
        "refine_passes": refine,
    }


def encode(
    state: Mapping[str, Any],
    X: np.ndarray,
    Y: np.ndarray | None = None,
    params: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Codes ``sgn(K(x) w_t)`` as bool (N, bits), True = +1; computed in row blocks."""
    keys = ("anchors", "sigma", "kernel_mean", "weights")
    p, state, X = encode_inputs(state, X, params, DEFAULTS, METHOD, keys)
    anchors = np.asarray(state["anchors"], dtype=np.float64)
    anchor_sq = np.einsum("ij,ij->i", anchors, anchors)
    sigma = float(state["sigma"])
    kernel_mean = np.asarray(state["kernel_mean"], dtype=np.float64)
    W = np.asarray(state["weights"], dtype=np.float64)

    def score(B: np.ndarray) -> np.ndarray:
        return kernel_features(B, anchors, sigma, kernel_mean, anchor_sq) @ W

    rows = block_rows(max(X.shape[1], anchors.shape[0]), p)
    return encode_blocks(X, int(state["bits"]), score, rows, METHOD)
