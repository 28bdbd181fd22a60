r"""SH: spectral hashing (the paper's baseline [44]).

Weiss, Torralba & Fergus, "Spectral Hashing", NeurIPS 2008. The relaxed graph
Laplacian problem is solved for data assumed uniformly distributed on a box aligned with the
principal directions; the eigenfunctions of the weighted Laplace-Beltrami operator of a 1-D
uniform density on :math:`[a, b]` are

.. math::
    \Phi_k(x) = \sin\Big(\frac{\pi}{2} + \frac{k\pi}{b-a}(x - a)\Big), \qquad
    \lambda_k = 1 - \exp\Big(-\frac{\epsilon^2}{2}\Big|\frac{k\pi}{b-a}\Big|^2\Big),
    \quad k = 1, 2, \dots

(the paper writes :math:`\Phi_k` for data shifted to start at 0). The algorithm:

1. PCA: project the centred data onto the top :math:`r` = ``bits`` principal directions,
   :math:`y = W^\top(x - \mu)` (the reference setting uses ``min(bits, d)`` directions; we
   require ``bits <= d``).
2. Fit the box: :math:`a_j = \min_i y_{ij}`, :math:`b_j = \max_i y_{ij}` on the training data.
3. Evaluate the single-dimension eigenvalues for :math:`k = 1..r` along every direction (the
   :math:`r\cdot r` candidates) and keep the :math:`r` smallest. As :math:`\lambda_k` is
   increasing in the frequency :math:`\omega_{jk} = k\pi/(b_j - a_j)` for every
   :math:`\epsilon > 0`, this is the choice of the :math:`r` smallest :math:`\omega_{jk}`, so
   :math:`\epsilon` need not be set. Ties are broken by smaller k, then smaller direction index.
   The constant :math:`k = 0` mode is excluded.
4. Threshold each chosen eigenfunction at zero: :math:`b(x) = \operatorname{sgn}
   \big(\sin(\pi/2 + \omega_{jk}(y_j - a_j))\big)`.

SH is deterministic: the seed is accepted for the common interface but unused.

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
    encode_blocks,
    encode_inputs,
    iter_float_blocks,
    pca,
    resolve_params,
)

__all__ = ["DEFAULTS", "encode", "fit", "select_modes"]

METHOD = "sh"
#: default parameters (none besides the common ``block_rows``)
DEFAULTS: dict[str, Any] = {}
#: keys a ``methods`` row may set (checked at start-up by :func:`pipeline.methods.check_params`)
PARAMS: tuple[str, ...] = (*DEFAULTS, "block_rows")


def select_modes(ranges: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Pick the ``r`` single-dimension modes with the smallest :math:`\omega = k\pi/(b-a)`.

    Args:
        ranges (np.ndarray): box widths :math:`b_j - a_j` (m,) along the PCA directions.
        r (int): number of modes (bits); candidates are ``k = 1..r`` per direction.

    Returns:
        ``(dims (r,), k (r,), omegas (r,))``; directions of zero width are never chosen.

    Example:
        >>> dims, k, w = select_modes(np.array([2.0, 1.0]), 3)
        >>> dims.tolist(), k.tolist()
        ([0, 1, 0], [1, 1, 2])
    """
    m = ranges.shape[0]
    ks = np.arange(1, r + 1, dtype=np.float64)[:, None]  # (r, 1)
    with np.errstate(divide="ignore"):
        omega = np.where(ranges[None, :] > 0, ks * np.pi / ranges[None, :], np.inf)  # (r, m)
    flat = omega.ravel()  # k-major: ties go to smaller k, then smaller direction index
    order = np.argsort(flat, kind="stable")[:r]
    if not np.isfinite(flat[order]).all():
        raise ValueError(
            f"{METHOD}: the training data has zero spread along the principal directions; "
            "cannot fit spectral hashing"
        )
    return (order % m).astype(np.int64), (order // m + 1).astype(np.int64), flat[order]


def fit(
    X: np.ndarray,
    Y: np.ndarray | None,
    bits: int,
    params: Mapping[str, Any] | None,
    seed: int,
) -> dict[str, Any]:
    """PCA, box fit and mode selection (steps 1-3 above); ``Y`` and ``seed`` are unused.

    Returns:
        state dict: ``mean`` (d,), ``projection`` (d, bits) PCA directions, ``mins``/``maxs``
        (bits,) box per direction, ``mode_dims``/``mode_k`` (bits,) int64, ``omegas`` (bits,),
        ``bits``, ``dim``.

    Raises:
        ValueError: X not 2-D / not finite / fewer than 2 rows / constant, bits < 1 or bits > d.
    """
    p = resolve_params(params, DEFAULTS, METHOD)
    check_seed(seed, METHOD)
    X = check_features(X, METHOD)
    d = X.shape[1]
    bits = check_bits(bits, METHOD, max_bits=d)
    rows = block_rows(d, p)
    mean, W, _ = pca(X, bits, METHOD, rows)
    mins = np.full(bits, np.inf)
    maxs = np.full(bits, -np.inf)
    for _, block in iter_float_blocks(X, rows, METHOD):
        y = (block - mean) @ W
        np.minimum(mins, y.min(axis=0), out=mins)
        np.maximum(maxs, y.max(axis=0), out=maxs)
    dims, ks, omegas = select_modes(maxs - mins, bits)
    return {
        "method": METHOD,
        "bits": bits,
        "dim": d,
        "mean": mean,
        "projection": W,
        "mins": mins,
        "maxs": maxs,
        "mode_dims": dims,
        "mode_k": ks,
        "omegas": omegas,
    }


def encode(
    state: Mapping[str, Any],
    X: np.ndarray,
    Y: np.ndarray | None = None,
    params: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Codes ``sgn(sin(pi/2 + omega (y_j - a_j)))`` as bool (N, bits); computed in row blocks."""
    keys = ("mean", "projection", "mins", "mode_dims", "omegas")
    p, state, X = encode_inputs(state, X, params, DEFAULTS, METHOD, keys)
    mean = np.asarray(state["mean"], dtype=np.float64)
    dims = np.asarray(state["mode_dims"], dtype=np.int64)
    proj = np.asarray(state["projection"], dtype=np.float64)[:, dims]  # (d, bits)
    offset = np.asarray(state["mins"], dtype=np.float64)[dims]
    omegas = np.asarray(state["omegas"], dtype=np.float64)

    def score(B: np.ndarray) -> np.ndarray:
        return np.sin(np.pi / 2 + omegas * ((B - mean) @ proj - offset))

    return encode_blocks(X, int(state["bits"]), score, block_rows(X.shape[1], p), METHOD)
