r"""Shallow unsupervised hashing baselines of the LAGNH paper (Table 3) plus a random floor.

Every module here implements the method contract of :mod:`pipeline.methods`:

* ``fit(X, Y, bits, params, seed) -> state``: learns on CPU with numpy (float64 where it
  matters), returns a dict of numpy arrays and plain values that ``torch.save`` can store;
* ``encode(state, X, Y, params) -> bool (N, bits)``: True meaning +1, ties to -1
  (:math:`b = \operatorname{sgn}(z)` with :math:`\operatorname{sgn}(0) = -1`), computed in row
  blocks so that no N x N (or N x d float64) matrix is ever held.

Methods (module: method, source paper; [n] = reference number in the LAGNH paper):

* ``lsh``: random Gaussian projections of centred features, sign (LSH [6]; Charikar 2002);
* ``sklsh``: random Fourier features of a Gaussian kernel with random thresholds
  (Raginsky & Lazebnik, NeurIPS 2009 [32]);
* ``sh``: spectral hashing, PCA + 1-D Laplacian eigenfunctions (Weiss et al., NeurIPS 2008 [44]);
* ``pcah``: PCA projection, sign (Wang, Kumar & Chang, TPAMI 2012 [41]);
* ``itq``: PCA + learned orthogonal rotation (Gong et al., TPAMI 2013 [7]);
* ``sgh``: scalable graph hashing with feature transformation (Jiang & Li, IJCAI 2015 [10]);
* ``random``: Bernoulli(0.5) codes independent of the features, the floor (no paper).

The auxiliary labels ``Y`` are ignored by all of them (they are unsupervised).

This ``__init__`` holds the small numerical helpers the modules share (input checks, PCA,
block-wise encoding). It deliberately imports none of the method modules, so that importing
one method never imports the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

__all__ = [
    "BLOCK_BYTES",
    "block_rows",
    "check_bits",
    "check_encode_input",
    "check_features",
    "check_seed",
    "check_state",
    "encode_blocks",
    "fix_signs",
    "iter_float_blocks",
    "pca",
    "resolve_params",
]

#: target size in bytes of one float64 row block during encoding / covariance accumulation
BLOCK_BYTES: int = 1 << 25  # 32 MiB


def block_rows(width: int, params: Mapping[str, Any] | None = None) -> int:
    """Rows per block so that a float64 block of ``width`` columns is about :data:`BLOCK_BYTES`.

    ``params["block_rows"]`` (a positive int), when given, overrides the automatic value.
    """
    if params is not None and params.get("block_rows") is not None:
        rows = params["block_rows"]
        if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 1:
            raise ValueError(f"params['block_rows'] must be a positive int, got {rows!r}")
        return int(rows)
    return max(1, BLOCK_BYTES // (8 * max(1, int(width))))


def resolve_params(
    params: Mapping[str, Any] | None, defaults: Mapping[str, Any], method: str
) -> dict[str, Any]:
    """Merge ``params`` over ``defaults``; unknown keys raise a ValueError listing the known ones.

    Every method also accepts ``block_rows`` (rows per block in ``encode``/``fit``; default:
    automatic, about 32 MiB of float64 per block).
    """
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise ValueError(f"{method}: params must be a dict, got {type(params).__name__}")
    known = {**defaults, "block_rows": None}
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(
            f"{method}: unknown parameter(s) {unknown}; known parameters: {sorted(known)}"
        )
    merged = dict(known)
    merged.update(params)
    return merged


def check_bits(bits: Any, method: str, max_bits: int | None = None, what: str = "") -> int:
    """Validate the code length: an int >= 1 and, when ``max_bits`` is given, <= ``max_bits``."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise ValueError(f"{method}: bits must be an int, got {bits!r}")
    if bits < 1:
        raise ValueError(f"{method}: bits must be >= 1, got {bits}")
    if max_bits is not None and bits > max_bits:
        raise ValueError(
            f"{method}: bits must be <= {what or 'the feature dimension'} ({max_bits}), "
            f"got bits={bits}; use fewer bits or a method without this limit "
            "(lsh, sklsh, sgh, random)"
        )
    return int(bits)


def check_seed(seed: Any, method: str) -> int:
    """Validate the seed: a non-negative int (what ``np.random.default_rng`` accepts)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{method}: seed must be a non-negative int, got {seed!r}")
    return int(seed)


def _check_2d(X: Any, method: str, name: str = "X") -> Any:
    if not hasattr(X, "shape") or not hasattr(X, "dtype"):
        X = np.asarray(X)
    if len(X.shape) != 2:
        raise ValueError(
            f"{method}: {name} must be a 2-D array (n_samples, n_features), got shape {X.shape}"
        )
    kind = np.dtype(X.dtype).kind
    if kind not in "biuf":
        raise ValueError(f"{method}: {name} must hold real numbers, got dtype {X.dtype}")
    return X


def iter_float_blocks(
    X: Any, rows: int, method: str, name: str = "X"
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, block)`` with ``block = float64(X[start:start+rows])``; fail on NaN/inf."""
    n = X.shape[0]
    for start in range(0, n, rows):
        block = np.asarray(X[start : start + rows], dtype=np.float64)
        if not np.isfinite(block).all():
            bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise ValueError(
                f"{method}: {name} contains NaN or infinite values (first bad row {bad})"
            )
        yield start, block


def check_features(X: Any, method: str, min_rows: int = 2, name: str = "X") -> np.ndarray:
    """Validate training features: 2-D, real, finite, at least ``min_rows`` rows and 1 column.

    Returns ``X`` as an array (not copied when it already is one).
    """
    X = np.asarray(_check_2d(X, method, name))
    n, d = X.shape
    if d < 1:
        raise ValueError(f"{method}: {name} must have at least one feature column")
    if n < min_rows:
        raise ValueError(f"{method}: {name} needs at least {min_rows} rows to fit, got {n}")
    for _ in iter_float_blocks(X, block_rows(d), method, name):
        pass
    return X


def check_state(state: Any, method: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
    """Check that ``state`` is a fitted state of ``method`` holding ``keys``."""
    if not isinstance(state, Mapping):
        raise ValueError(f"{method}: state must be the dict returned by fit()")
    if state.get("method") != method:
        raise ValueError(
            f"{method}: state was fitted by method {state.get('method')!r}, not {method!r}"
        )
    missing = [k for k in ("bits", "dim", *keys) if k not in state]
    if missing:
        raise ValueError(f"{method}: state lacks key(s) {missing}; refit the model")
    return state


def check_encode_input(X: Any, state: Mapping[str, Any], method: str) -> Any:
    """Validate features to encode: 2-D, real, with the fitted feature dimension."""
    X = _check_2d(X, method)
    if X.shape[1] != int(state["dim"]):
        raise ValueError(
            f"{method}: X has {X.shape[1]} features but the model was fitted on {int(state['dim'])}"
        )
    return X


def encode_blocks(
    X: Any,
    bits: int,
    score: Callable[[np.ndarray], np.ndarray],
    rows: int,
    method: str,
) -> np.ndarray:
    """Apply ``score`` (float64 block -> (rows, bits) real scores) block-wise; return ``z > 0``.

    ``z > 0`` is :math:`\\operatorname{sgn}(z)` with ties to -1 (False), as in the contract.
    """
    out = np.empty((X.shape[0], bits), dtype=bool)
    for start, block in iter_float_blocks(X, rows, method):
        z = score(block)
        np.greater(z, 0.0, out=out[start : start + block.shape[0]])
    return out


def encode_inputs(
    state: Any, X: Any, params: Mapping[str, Any] | None, defaults: Mapping[str, Any],
    method: str, keys: tuple[str, ...],
) -> tuple[dict[str, Any], Mapping[str, Any], Any]:
    """The checks every ``encode`` starts with: ``(params merged over defaults, the fitted state
    holding keys, the validated features)``; ValueError naming ``method`` otherwise."""
    p = resolve_params(params, defaults, method)
    state = check_state(state, method, keys)
    return p, state, check_encode_input(X, state, method)


def encode_linear(state: Any, X: Any, params: Mapping[str, Any] | None,
                  defaults: Mapping[str, Any], method: str) -> np.ndarray:
    """Codes ``sgn(P^T (x - mu))`` from ``state["mean"]`` and ``state["projection"]`` (the
    encoding of LSH, PCAH and ITQ, whose projections differ only in how they are learned)."""
    p, state, X = encode_inputs(state, X, params, defaults, method, ("mean", "projection"))
    mean = np.asarray(state["mean"], dtype=np.float64)
    proj = np.asarray(state["projection"], dtype=np.float64)
    return encode_blocks(
        X, int(state["bits"]), lambda B: (B - mean) @ proj, block_rows(X.shape[1], p), method
    )


def fix_signs(vectors: np.ndarray) -> np.ndarray:
    """Flip each column so that its largest-magnitude entry is positive (first one on ties).

    Eigenvectors are defined up to sign; this convention makes fitted projections reproducible
    across LAPACK builds. Returns a new array.
    """
    idx = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[idx, np.arange(vectors.shape[1])])
    signs[signs == 0] = 1.0
    return vectors * signs


def pca(
    X: np.ndarray, r: int, method: str, rows: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Top-``r`` principal directions by eigen-decomposition of the covariance (float64).

    .. math::
        \mu = \tfrac{1}{n}\textstyle\sum_i x_i, \qquad
        C = \tfrac{1}{n-1}\textstyle\sum_i (x_i-\mu)(x_i-\mu)^\top = U \Lambda U^\top

    The covariance is accumulated over row blocks, so memory is O(d^2 + rows * d).
    Eigenvectors are sorted by decreasing eigenvalue and sign-normalised with :func:`fix_signs`.

    Returns:
        ``(mean (d,), components (d, r), eigenvalues (r,))``, all float64.
    """
    n, d = X.shape
    rows = rows or block_rows(d)
    mean = np.zeros(d, dtype=np.float64)
    for _, block in iter_float_blocks(X, rows, method):
        mean += block.sum(axis=0)
    mean /= n
    cov = np.zeros((d, d), dtype=np.float64)
    for _, block in iter_float_blocks(X, rows, method):
        block -= mean
        cov += block.T @ block
    cov /= max(n - 1, 1)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals, kind="stable")[::-1][:r]
    return mean, fix_signs(evecs[:, order]), np.clip(evals[order], 0.0, None)
