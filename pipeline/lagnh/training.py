r"""Training loop of LAGNH: alternating discriminator / generator updates of Eq. (10)–(12).

Cui et al., "Two-pronged Strategy: Lightweight Augmented Graph Network Hashing for Scalable
Image Retrieval", ACM MM 2021, https://doi.org/10.1145/3474085.3475605, Sections 3.4 and 4.2.

Per minibatch (shuffled each epoch with a seeded generator; the graph of Eq. 3–5 is built from
the batch members only, so memory is bounded by ``batch_size**2``):

1. one generator forward pass :math:`Z = G(X_b, Y_b)`;
2. one discriminator step on :math:`\mathcal{L}_D` (Eq. 10, BCE with logits): real samples
   :math:`z' \sim \mathcal{N}(0, I_r)`, fake :math:`Z` (detached);
3. a generator step on Eq. (12),
   :math:`\mathcal{L}_{GAN}^{G} + \lambda_1\mathcal{L}_{recons} + \lambda_2\mathcal{L}_{quan} +
   \lambda_3\mathcal{L}_{cl}`, against the updated discriminator; the first generator step reuses
   the forward pass of (1), further ones (``g_steps > 1``: the authors use 5) recompute it.

Adam (``lr``, default 1e-4) for both networks. Reproducibility: all randomness (initialisation,
shuffling, prior samples, dropout) comes from torch's RNG seeded with ``seed`` inside
``torch.random.fork_rng`` (the caller's RNG state is left untouched); on CPU two runs with the same
seed and thread count are bit-identical. On CUDA, cuBLAS reductions may differ in the last bits
between runs unless ``torch.use_deterministic_algorithms(True)`` and ``CUBLAS_WORKSPACE_CONFIG`` are
set by the caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .losses import (
    classification_loss,
    cosine_reconstruction_loss,
    discriminator_loss,
    feature_reconstruction_loss,
    generator_adversarial_loss,
    inner_product_reconstruction_loss,
    quantization_loss,
    total_loss,
)
from .model import (
    Discriminator,
    GeneratorOutput,
    LAGNHGenerator,
    LAGNHOptions,
    build_models,
    pick_device,
)

#: Loss terms recorded per epoch in ``history`` (besides ``epoch`` and ``seconds``).
HISTORY_TERMS = ("loss_total", "loss_gan_g", "loss_gan_d", "loss_recons", "loss_quan", "loss_cl")


@dataclass
class TrainResult:
    """Trained networks, the per-epoch history (list of dicts, see :data:`HISTORY_TERMS`) and
    ``sigma``: the mean Gaussian bandwidth of the last epoch's batches (the fixed ``sigma``, the
    default rule's values, or ``None`` when no S^v is built); the encoding reuses it."""

    generator: LAGNHGenerator
    discriminator: Discriminator
    history: list[dict[str, float]] = field(default_factory=list)
    sigma: float | None = None


def generator_terms(
    gen: LAGNHGenerator,
    disc: Discriminator,
    x: Tensor,
    y: Tensor | None,
    out: GeneratorOutput | None = None,
) -> dict[str, Tensor]:
    """All generator-side terms of Eq. (12) for one batch, plus their weighted sum ``total``.

    ``cl`` is a zero tensor when the classification term is switched off (``no-aux``).
    """
    o = gen.opts
    if out is None:
        out = gen(x, y)
    z = out.z
    gan = generator_adversarial_loss(disc(z))
    if o.recons_pred == "feat":
        assert out.x_rec is not None
        recons = feature_reconstruction_loss(x, out.x_rec)
    else:
        target = gen.reconstruction_target(out, x, y)
        if o.recons_clip:  # [cos]_+ <= 1: pairs sharing several labels ask no more than one
            target = target.clamp(max=1.0)
        fn = cosine_reconstruction_loss if o.recons_pred == "cos" else \
            inner_product_reconstruction_loss
        recons = fn(z, target, o.k)
    quan = quantization_loss(z, o.sign_zero)
    cl = None
    if o.cls_loss is not None:
        assert out.cls_logits is not None and y is not None
        cl = classification_loss(out.cls_logits, y, o.cls_loss)
    total = total_loss(gan, recons, quan, cl, o.lambda1, o.lambda2, o.lambda3)
    return {
        "total": total,
        "gan_g": gan,
        "recons": recons,
        "quan": quan,
        "cl": cl if cl is not None else torch.zeros((), device=z.device),
    }


def train_step(
    gen: LAGNHGenerator,
    disc: Discriminator,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor | None,
) -> dict[str, Tensor]:
    """One minibatch: 1 discriminator step then ``g_steps`` generator steps (see module doc).

    Returns detached loss tensors (means over the generator steps) and, under ``"sigma"``, the
    bandwidth of the batch graph when S^v is built; no host synchronisation.
    """
    bits = gen.gcn.conv2.lin.out_features
    sums: dict[str, Tensor] = {}
    out = gen(x, y)
    # -- discriminator (Eq. 10, max over D) -------------------------------------------------
    prior = torch.randn(x.shape[0], bits, device=x.device, dtype=x.dtype)
    d_real, d_fake = disc(torch.cat([prior, out.z.detach()])).split(x.shape[0])  # one pass
    d_loss = discriminator_loss(d_real, d_fake)
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    # -- generator (Eq. 12, min over G) -----------------------------------------------------
    disc.requires_grad_(False)
    try:
        for step in range(gen.opts.g_steps):
            if step > 0:
                out = gen(x, y)
            terms = generator_terms(gen, disc, x, y, out)
            opt_g.zero_grad(set_to_none=True)
            terms["total"].backward()
            opt_g.step()
            for key, val in terms.items():
                sums[key] = sums.get(key, 0.0) + val.detach()
            if out.graph.sigma is not None:
                sums["sigma"] = sums.get("sigma", 0.0) + out.graph.sigma.detach()
    finally:
        disc.requires_grad_(True)
    result = {key: val / gen.opts.g_steps for key, val in sums.items()}
    result["gan_d"] = d_loss.detach()
    return result


def _as_tensor(a: np.ndarray | None, device: torch.device) -> Tensor | None:
    if a is None:
        return None
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32).to(device)


def train_lagnh(
    X: np.ndarray,
    Y: np.ndarray | None,
    bits: int,
    opts: LAGNHOptions,
    seed: int = 0,
    log: Callable[[str], Any] | None = None,
    on_epoch: Callable[[int, LAGNHGenerator, Discriminator, float | None], Any] | None = None,
) -> TrainResult:
    """Train LAGNH on features ``X`` (n, d) and auxiliary labels ``Y`` (n, c) for ``opts.epochs``.

    Inputs are assumed validated (see :func:`pipeline.lagnh.method.fit`). The networks are returned
    on the training device in eval mode; ``history`` has one dict per epoch with ``epoch``,
    the means over batches of :data:`HISTORY_TERMS` and the epoch's wall time ``seconds``.

    ``on_epoch(epoch, generator, discriminator, sigma)``, when given, is called after every
    epoch (networks still in training mode); it must copy what it keeps and must not draw from
    torch's RNG (e.g. ``state_dict`` clones only): then the training is unchanged by it, and a
    snapshot at epoch e equals the result of training for e epochs.
    """
    device = pick_device(opts.device)
    n, d = X.shape
    c = Y.shape[1] if Y is not None else 0
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    history: list[dict[str, float]] = []
    sigma: float | None = opts.sigma
    with torch.random.fork_rng(devices=fork_devices, device_type=device.type):
        torch.manual_seed(seed)
        gen, disc = build_models(d, c, bits, opts)
        gen.to(device).train()
        disc.to(device).train()
        opt_g = torch.optim.Adam(gen.parameters(), lr=opts.lr, fused=True)
        opt_d = torch.optim.Adam(disc.parameters(), lr=opts.lr, fused=True)
        x_all = _as_tensor(X, device)
        y_all = _as_tensor(Y, device) if opts.use_aux else None
        assert x_all is not None
        shuffle = torch.Generator().manual_seed(seed)
        for epoch in range(1, opts.epochs + 1):
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=shuffle).to(device)
            sums: dict[str, Tensor] = {}
            batches = 0
            for idx in perm.split(opts.batch_size):
                xb = x_all.index_select(0, idx)
                yb = y_all.index_select(0, idx) if y_all is not None else None
                terms = train_step(gen, disc, opt_g, opt_d, xb, yb)
                for key, val in terms.items():
                    sums[key] = sums.get(key, 0.0) + val
                batches += 1
            keys = ("total", "gan_g", "gan_d", "recons", "quan", "cl")
            values = torch.stack([sums[k] for k in keys]).div(batches).tolist()  # one sync
            row: dict[str, float] = {"epoch": epoch}
            row.update({f"loss_{k}": float(v) for k, v in zip(keys, values, strict=True)})
            row["seconds"] = time.perf_counter() - t0
            history.append(row)
            sigma = float(sums["sigma"] / batches) if "sigma" in sums else None
            if on_epoch is not None:
                on_epoch(epoch, gen, disc, sigma)
            if log is not None:
                log(f"epoch {epoch}/{opts.epochs} " + " ".join(
                    f"{k}={row[k]:.4g}" for k in HISTORY_TERMS) + f" ({row['seconds']:.2f}s)")
    gen.eval()
    disc.eval()
    return TrainResult(gen, disc, history, sigma)
