r"""LAGNH as a pipeline hashing method: ``fit`` / ``encode`` per :mod:`pipeline.methods`.

Cui et al., "Two-pronged Strategy: Lightweight Augmented Graph Network Hashing for Scalable
Image Retrieval", ACM MM 2021, https://doi.org/10.1145/3474085.3475605.

``fit(X, Y, bits, params, seed) -> state`` trains the model of Eq. (1)–(12)
(:func:`pipeline.lagnh.training.train_lagnh`) and returns a ``torch.save``-able dict:

=================  ==========================================================================
key                content
=================  ==========================================================================
``format``         ``"lagnh-state"``; ``version`` 1
``bits``           code length :math:`r`; ``in_features`` :math:`d`; ``n_classes`` :math:`c`
``options``        the resolved :class:`~pipeline.lagnh.model.LAGNHOptions` as a dict
``seed``           the training seed
``generator``      generator ``state_dict`` (CPU tensors); ``discriminator`` likewise
``reference``      ``{"xbar": (m, d') float32, "y": (m, c) uint8 or None}``: the training
                   images for the inductive encoding (:mod:`pipeline.lagnh.encoding`)
``sigma``          bandwidth of Eq. (3) used when encoding: ``sigma`` if set, else the mean
                   of the default rule over the last training epoch (None without S^v)
``history``        one dict per epoch: ``epoch``, ``loss_total``, ``loss_gan_g``,
                   ``loss_gan_d``, ``loss_recons``, ``loss_quan``, ``loss_cl``, ``seconds``
=================  ==========================================================================

States written by earlier versions may also hold ``kernels`` (which elementwise kernels trained
them, ``"C"`` or ``"torch"``); it is informational and ignored when encoding.

``encode(state, X, Y, params) -> bool (N, bits)`` applies Eq. (13), ``True`` = +1. Of ``params``
it reads only ``encode_mode``, ``encode_batch_size``, ``encode_neighbors`` and ``device`` (the
rest of the model is fixed by the state); missing keys fall back to the values used at fit time.
A state of variant ``"authors"`` always encodes batch-wise in blocks of 256 (a conflicting value
raises ``ValueError``, see :func:`~pipeline.lagnh.model.resolve_options`).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import torch

from pipeline.methods import ENCODE_ONLY

from .encoding import (
    batch_scale,
    build_reference,
    encode_batchwise,
    encode_inductive,
    hash_codes,
)
from .model import DEFAULT_PARAMS, LAGNHOptions, build_models, pick_device, resolve_options
from .training import train_lagnh

log = logging.getLogger(__name__)

STATE_FORMAT = "lagnh-state"
STATE_VERSION = 1
#: Keys of ``params`` that ``encode`` honours (the model itself is fixed by the state).
ENCODE_KEYS = (*ENCODE_ONLY["lagnh"], "device")


def _check_features(X: Any, name: str = "X") -> np.ndarray:
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"lagnh: {name} must be a 2-D array (n, d), got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise ValueError(f"lagnh: {name} must be real-valued, got dtype {X.dtype}")
    X = X.astype(np.float32, copy=False)
    if not np.isfinite(X).all():
        raise ValueError(f"lagnh: {name} contains NaN or infinite values")
    return X


def _check_labels(Y: Any, n: int, c: int | None = None) -> np.ndarray:
    Y = _check_features(Y, "Y")
    if Y.shape[0] != n:
        raise ValueError(f"lagnh: X and Y must have the same number of rows, got {n} and "
                         f"{Y.shape[0]}")
    if c is not None and Y.shape[1] != c:
        raise ValueError(f"lagnh: Y has {Y.shape[1]} columns, the model was trained with {c}")
    if (Y < 0).any():
        raise ValueError("lagnh: auxiliary labels Y must be non-negative (0/1 indicators)")
    return Y


def check_params(params: dict[str, Any]) -> None:
    """Refuse unknown keys or bad values of a LAGNH ``methods`` row (the lagnh section with the
    row's overrides) before training: :func:`pipeline.methods.check_params` calls it at start-up.
    """
    resolve_options(params)


def fit(X: np.ndarray, Y: np.ndarray | None, bits: int, params: dict[str, Any] | None,
        seed: int = 0) -> dict[str, Any]:
    """Train LAGNH on training features ``X`` (n, d) and auxiliary labels ``Y`` (n, c).

    Raises:
        ValueError: bad ``params`` (unknown key, variant or ablation: the message lists the
            valid values), ``bits < 1``, X/Y not 2-D, row counts differing, NaN/inf, ``n < 2``.
    """
    X, Y, bits, opts = _checked(X, Y, bits, params)
    result = train_lagnh(X, Y if opts.use_aux else None, bits, opts, seed=seed)
    return _state(X, Y, bits, opts, seed, result.generator, result.discriminator, result.sigma,
                  result.history)


def _checked(X: Any, Y: Any, bits: Any, params: dict[str, Any] | None
             ) -> tuple[np.ndarray, np.ndarray, int, LAGNHOptions]:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 1:
        raise ValueError(f"lagnh: bits must be an integer >= 1, got {bits!r}")
    opts = resolve_options(params)
    X = _check_features(X)
    n = X.shape[0]
    if n < 2:
        raise ValueError(f"lagnh: need at least 2 training images, got {n}")
    if Y is None:
        if opts.use_aux:
            raise ValueError("lagnh: auxiliary labels Y are required (only ablation 'no-aux' "
                             "runs without them)")
        Y = np.zeros((n, 0), dtype=np.float32)
    return X, _check_labels(Y, n), int(bits), opts


def _state(X: np.ndarray, Y: np.ndarray, bits: int, opts: LAGNHOptions, seed: int,
           gen: torch.nn.Module, disc: torch.nn.Module, sigma: float | None,
           history: list[dict[str, float]]) -> dict[str, Any]:
    """The ``torch.save``-able state of trained networks (table in the module doc)."""
    n = X.shape[0]
    device = next(gen.parameters()).device
    with torch.no_grad():
        xbar = torch.cat([
            gen.attention.project(torch.from_numpy(X[s:s + 4096]).to(device)).cpu()
            for s in range(0, n, 4096)
        ])
    ref_y = torch.from_numpy(np.rint(Y).clip(0, 255).astype(np.uint8)) if opts.use_aux else None
    return {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "bits": bits,
        "in_features": int(X.shape[1]),
        "n_classes": int(Y.shape[1]),
        "seed": int(seed),
        "options": opts.to_dict(),
        "generator": {k: v.detach().cpu().clone() for k, v in gen.state_dict().items()},
        "discriminator": {k: v.detach().cpu().clone() for k, v in disc.state_dict().items()},
        "reference": {"xbar": xbar.contiguous(), "y": ref_y},
        "sigma": sigma,
        "history": history,
    }


def fit_checkpoints(X: np.ndarray, Y: np.ndarray | None, bits: int,
                    params: dict[str, Any] | None, seed: int,
                    epochs: list[int]) -> dict[int, dict[str, Any]]:
    """States after each of ``epochs`` from one training of ``max(epochs)`` epochs.

    The state at epoch e is the one :func:`fit` returns with ``epochs: e`` (same seed): the
    training loop has no schedule that depends on the total, and the snapshots leave its RNG
    alone (:func:`~pipeline.lagnh.training.train_lagnh`'s ``on_epoch``).
    """
    wanted = sorted({int(e) for e in epochs})
    if not wanted or wanted[0] < 1:
        raise ValueError(f"lagnh: checkpoint epochs must be >= 1, got {epochs}")
    X, Y, bits, opts = _checked(X, Y, bits, {**(params or {}), "epochs": wanted[-1]})
    snaps: dict[int, tuple[dict, dict, float | None]] = {}

    def keep(epoch: int, gen: torch.nn.Module, disc: torch.nn.Module, sigma: float | None):
        if epoch in wanted:
            snaps[epoch] = ({k: v.detach().clone() for k, v in gen.state_dict().items()},
                            {k: v.detach().clone() for k, v in disc.state_dict().items()},
                            sigma)

    result = train_lagnh(X, Y if opts.use_aux else None, bits, opts, seed=seed, on_epoch=keep)
    gen, disc = result.generator, result.discriminator
    states = {}
    for epoch in wanted:
        g_sd, d_sd, sigma = snaps[epoch]
        gen.load_state_dict(g_sd)
        disc.load_state_dict(d_sd)
        e_opts = dataclasses.replace(opts, epochs=epoch)
        states[epoch] = _state(X, Y, bits, e_opts, seed, gen, disc, sigma,
                               result.history[:epoch])
    return states


def uses_aux(params: dict[str, Any]) -> bool:
    """LAGNH reads the auxiliary labels, except under the ``no-aux`` ablation."""
    return resolve_options({k: v for k, v in params.items() if k in DEFAULT_PARAMS}).use_aux


def encode_options(state: dict[str, Any], params: dict[str, Any] | None) -> LAGNHOptions:
    """The state's options with the encode-time keys of ``params`` (validated) applied."""
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError("lagnh: not a LAGNH state (missing format 'lagnh-state')")
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"lagnh: unsupported state version {state.get('version')!r}")
    opts = LAGNHOptions.from_dict(state["options"])
    given = {k: v for k, v in (params or {}).items() if k in ENCODE_KEYS}
    # under the state's variant: "authors" fixes encode_mode / encode_batch_size (or refuses)
    checked = resolve_options({**given, "variant": opts.variant})
    opts = dataclasses.replace(opts, **{k: getattr(checked, k) for k in given})
    if opts.sigma is None and state.get("sigma") is not None:
        opts = dataclasses.replace(opts, sigma=float(state["sigma"]))  # the training bandwidth
    return opts


def load_generator(state: dict[str, Any], opts: LAGNHOptions) -> torch.nn.Module:
    """Rebuild the trained generator on ``opts.device`` (the caller's RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        gen, _ = build_models(state["in_features"], state["n_classes"], state["bits"], opts)
    gen.load_state_dict(state["generator"])
    return gen.to(pick_device(opts.device)).eval()


def encode_group(state: dict[str, Any], params: dict[str, Any] | None = None) -> int:
    """Rows whose codes depend on each other: ``encode_batch_size`` in ``"batch"`` mode (blocks
    of it in file order), else 1 (each image is encoded against the fixed training graph)."""
    opts = encode_options(state, params)
    return int(opts.encode_batch_size) if opts.encode_mode == "batch" else 1


def encode(state: dict[str, Any], X: np.ndarray, Y: np.ndarray | None,
           params: dict[str, Any] | None = None) -> np.ndarray:
    """Binary codes (N, bits), ``True`` = +1, by Eq. (13) in ``encode_mode`` (see
    :mod:`pipeline.lagnh.encoding`: ``"inductive"`` codes do not depend on the batch, ``"batch"``
    codes do).
    """
    opts = encode_options(state, params)
    X = _check_features(X)
    n = X.shape[0]
    if X.shape[1] != state["in_features"]:
        raise ValueError(f"lagnh: X has {X.shape[1]} columns, the model was trained with "
                         f"{state['in_features']}")
    if opts.use_aux:
        if Y is None:
            raise ValueError("lagnh: auxiliary labels Y are required to encode")
        Y = _check_labels(Y, n, state["n_classes"])
    else:
        Y = None
    if n == 0:
        return np.zeros((0, state["bits"]), dtype=bool)
    gen = load_generator(state, opts)
    if opts.encode_mode == "batch":
        z = encode_batchwise(gen, X, Y, opts.encode_batch_size)
    else:
        ref = state["reference"]
        m = int(ref["xbar"].shape[0])
        scale = batch_scale(opts.batch_size, m) if opts.encode_scale == "batch" else 1.0
        graph = build_reference(gen, ref["xbar"], ref["y"], opts.encode_neighbors,
                                block=opts.encode_batch_size, scale=scale)
        z = encode_inductive(gen, graph, X, Y, block=opts.encode_batch_size)
    return hash_codes(z)
