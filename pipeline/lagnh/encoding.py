r"""Hash codes of new images, Eq. (13): :math:`\mathbf{b}_q = \mathrm{sgn}(\mathbf{z}_q)`.

Cui et al., "Two-pronged Strategy: Lightweight Augmented Graph Network Hashing for Scalable
Image Retrieval", ACM MM 2021, https://doi.org/10.1145/3474085.3475605, end of Section 3.4.

:math:`\mathrm{sgn}(0) = -1` (the paper: "returns 1 if the element is positive and -1 otherwise").
The paper only says :math:`\mathbf{z}_q` comes "by forward propagation"; the GCN needs a graph
around each new image, so two modes are provided.

``"batch"`` — the paper's / authors' encoding
    Images are cut into blocks of ``encode_batch_size`` in file order and each block is run
    through the generator exactly as a training batch (eval mode: no dropout; :math:`\sigma` as
    in the inductive mode): attention and graph come from the block's own members. **An
    image's code depends on which images share its block** (and thus on file order and block
    size).

``"inductive"`` (default) — deterministic, one image at a time
    The training set :math:`R` (:math:`m` images, stored in the model state as
    :math:`\bar{x}_j = W_x x_j + b_x` and :math:`y_j`) is a fixed reference graph; a new image
    :math:`q` reads from it and never from other new images:

    1. attention (Eq. 1–2) of :math:`q` over :math:`\{\bar{y}_j\}_{j\in R} \cup \{\bar{y}_q\}`
       (reference images attend over :math:`R`);
    2. its graph row (Eq. 3–5) over itself and its :math:`K` = ``encode_neighbors`` nearest
       reference images in :math:`x^{att}` space (``None`` or :math:`K \ge m`: all of
       :math:`R`); :math:`\sigma` fixed for all rows: ``sigma`` if set, otherwise the mean
       bandwidth of the last training epoch (stored in the state; evaluated over :math:`R`
       with :func:`~pipeline.lagnh.graph.default_sigma` only for states without one);
    3. normalisation with degrees :math:`d_u = \sum_{v \in N(u)} s_{uv}` where every node, new or
       reference, has the row :math:`N(u)` = itself + its :math:`K` nearest *other* reference
       images: :math:`\tilde{s}_{uv} = s_{uv}/\sqrt{d_u d_v}` (sym) or :math:`s_{uv}/d_u` (row);
    4. both GCN layers: layer 1 of the reference images is computed once from their own rows;
       :math:`z_q = \tilde{s}_{qq} h_q W_2^\top + \sum_{v} \tilde{s}_{qv} h_v W_2^\top + b_2`.

    Images are processed in blocks of ``encode_batch_size`` rows, the last block zero-padded, so
    every matrix product has the same shape whatever the batch: the code of an image does not
    depend on the other images passed in (bit-for-bit on CPU). Memory: a block × :math:`m`
    distance matrix, never an :math:`N \times N` or :math:`m \times m` one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .attention import factorized_attention, unit_coefficients
from .graph import (
    degree_scaling,
    gaussian_kernel,
    sigma_from_squared_distances,
    squared_distances,
)
from .model import LAGNHGenerator


def hash_codes(z: Tensor) -> np.ndarray:
    r"""Eq. (13) as booleans: ``True`` = +1, i.e. :math:`z > 0`; :math:`z \le 0` gives -1.

    Example:
        >>> hash_codes(torch.tensor([[0.5, 0.0, -1.0]]))
        array([[ True, False, False]])
    """
    return (z > 0).cpu().numpy()


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _pad(t: Tensor, rows: int) -> Tensor:
    if t.shape[0] == rows:
        return t
    pad = torch.zeros(rows - t.shape[0], *t.shape[1:], dtype=t.dtype, device=t.device)
    return torch.cat([t, pad], dim=0)


def _to_device(a: np.ndarray | Tensor | None, device: torch.device) -> Tensor | None:
    if a is None:
        return None
    t = torch.as_tensor(np.ascontiguousarray(a) if isinstance(a, np.ndarray) else a)
    return t.to(device=device, dtype=torch.float32)


@torch.no_grad()
def encode_batchwise(
    gen: LAGNHGenerator,
    X: np.ndarray | Tensor,
    Y: np.ndarray | Tensor | None,
    batch_size: int = 256,
) -> Tensor:
    """``"batch"`` mode: blocks of ``batch_size`` in file order, each its own graph.

    Returns :math:`Z` (N, r) on the generator's device.
    """
    gen.eval()
    device = next(gen.parameters()).device
    outs = []
    for s, e in _blocks(X.shape[0], batch_size):
        xb = _to_device(X[s:e], device)
        yb = _to_device(Y[s:e], device) if (Y is not None and gen.opts.use_aux) else None
        outs.append(gen(xb, yb).z)
    return torch.cat(outs, dim=0)


@dataclass
class ReferenceGraph:
    """The training images as a fixed graph for the inductive encoding (see module doc)."""

    x_att: Tensor  #: (m, d') attentive features of the reference images
    sq_norm: Tensor  #: (m,) their squared norms
    y: Tensor | None  #: (m, c) their auxiliary labels (None without aux)
    attention: tuple[Tensor, Tensor, Tensor] | None  #: (C, C_unit, B) of Eq. (1)-(2) over R
    sigma: float  #: Gaussian bandwidth of Eq. (3) used for every row
    degree: Tensor  #: (m,) degrees over their own rows
    messages: Tensor  #: (m, r) layer-2 messages h_v W_2^T of the reference images
    k: int | None  #: neighbours per row (None: all reference images)
    scale: float = 1.0  #: factor on every neighbour weight (:func:`batch_scale`)


class _Rows:
    """Graph rows of a block of nodes over the reference graph (one GCN aggregation pattern).

    Rows over all m reference images are dense (B, m); K-neighbour rows keep (B, K) weights
    and indices and aggregate with ``embedding_bag`` (weighted sums, no (B, K, f) gather).
    """

    def __init__(
        self,
        gen: LAGNHGenerator,
        x_att: Tensor,
        y: Tensor | None,
        ref_x: Tensor,
        ref_sq_norm: Tensor,
        ref_y: Tensor | None,
        sigma: float,
        k: int | None,
        self_index: Tensor | None,
        scale: float = 1.0,
    ) -> None:
        o = gen.opts
        m = ref_x.shape[0]
        sq = torch.addmm(ref_sq_norm.unsqueeze(0), x_att, ref_x.T, alpha=-2.0)
        sq.add_(x_att.square().sum(dim=1, keepdim=True)).clamp_min_(0.0)  # (B, m)
        if self_index is not None:  # reference rows: the node itself is the self term
            sq.scatter_(1, self_index.unsqueeze(1), float("inf"))
        limit = m - (1 if self_index is not None else 0)
        self.idx: Tensor | None = None
        if k is not None and k < limit:
            sq, self.idx = torch.topk(sq, k, dim=1, largest=False, sorted=True)
        use_v = o.graph in ("fused", "visual")
        use_a = o.graph in ("fused", "aux") and y is not None and ref_y is not None
        s = torch.zeros_like(sq)
        s_self = torch.zeros(x_att.shape[0], device=x_att.device, dtype=x_att.dtype)
        if use_v:
            weight = o.mu if o.graph == "fused" else 1.0
            s = s + weight * gaussian_kernel(sq, sigma)  # exp(-inf) = 0 for the masked self
            s_self = s_self + weight
        if use_a:
            assert y is not None and ref_y is not None
            s_a = y @ ref_y.T  # (B, m): one small GEMM, then pick the neighbours
            if self.idx is not None:
                s_a = s_a.gather(1, self.idx)
            elif self_index is not None:
                s_a = s_a.scatter(1, self_index.unsqueeze(1), 0.0)
            s = s + s_a
            s_self = s_self + y.square().sum(dim=1)
        if scale != 1.0:  # a training batch's share of the neighbours (see build_reference)
            s = s * scale
        self.s = s  # (B, m) or (B, k)
        self.s_self = s_self  # (B,)
        self.degree = s_self + s.sum(dim=1)

    def weights(self, mode: str, ref_degree: Tensor | None) -> tuple[Tensor, Tensor]:
        """Normalised weights (self (B,), neighbours (B, m|k)) of sym or row normalisation."""
        inv = degree_scaling(self.degree, mode)
        if mode == "row":
            return self.s_self * inv, self.s * inv.unsqueeze(1)
        assert ref_degree is not None
        ref_inv = degree_scaling(ref_degree, "sym")
        ref_inv = ref_inv.unsqueeze(0) if self.idx is None else ref_inv[self.idx]
        return self.s_self * inv * inv, self.s * inv.unsqueeze(1) * ref_inv

    def aggregate(self, w_self: Tensor, w_nb: Tensor, own: Tensor, ref: Tensor) -> Tensor:
        r""":math:`\tilde{s}_{uu} v_u + \sum_v \tilde{s}_{uv} v_v`."""
        if self.idx is None:
            nb = w_nb @ ref
        elif self.idx.shape[1] == 0:
            nb = torch.zeros_like(own)
        else:
            nb = F.embedding_bag(self.idx, ref, mode="sum", per_sample_weights=w_nb)
        return w_self.unsqueeze(1) * own + nb


def _attend(gen: LAGNHGenerator, xbar: Tensor, factors: tuple[Tensor, Tensor, Tensor] | None,
            y_self: Tensor | None) -> Tensor:
    """Eq. (1)–(2) over the reference images (+ each node's own labels when ``y_self``)."""
    if factors is None:
        return xbar
    coef, coef_unit, basis = factors
    self_coef = None if y_self is None else gen.attention.aux_factors(y_self)[0]
    return factorized_attention(xbar, coef, basis, gen.attention.norm, self_coef, coef_unit)


@torch.no_grad()
def build_reference(
    gen: LAGNHGenerator,
    ref_xbar: Tensor,
    ref_y: Tensor | None,
    k: int | None,
    block: int = 256,
    scale: float = 1.0,
) -> ReferenceGraph:
    """Reference graph from the stored training :math:`\\bar{x}` (m, d') and labels (m, c);
    every neighbour weight times ``scale`` (:func:`batch_scale`)."""
    gen.eval()
    o = gen.opts
    device = next(gen.parameters()).device
    ref_xbar = ref_xbar.to(device=device, dtype=torch.float32)
    ref_y = ref_y.to(device=device, dtype=torch.float32) if (ref_y is not None and o.use_aux) \
        else None
    m = ref_xbar.shape[0]
    spans = _blocks(m, block)
    factors = None
    if gen.attention.attend and ref_y is not None:
        coef, basis = gen.attention.aux_factors(ref_y)
        factors = (coef, unit_coefficients(coef, basis), basis)
    x_att = torch.cat([_attend(gen, _pad(ref_xbar[s:e], block), factors, None)[: e - s]
                       for s, e in spans])
    sq_norm = x_att.square().sum(dim=1)
    sigma = o.sigma
    if sigma is None:  # the default rule on the first reference rows (no m x m matrix)
        sq = squared_distances(_pad(x_att[:block], block), x_att)[: min(block, m)]
        sigma = float(sigma_from_squared_distances(sq))

    def rows(s: int, e: int) -> _Rows:
        idx = _pad(torch.arange(s, e, device=device), block)
        yb = _pad(ref_y[s:e], block) if ref_y is not None else None
        return _Rows(gen, _pad(x_att[s:e], block), yb, x_att, sq_norm, ref_y, float(sigma), k,
                     idx, scale)

    cached = [] if k is not None and k < m - 1 else None  # K-neighbour rows are small: keep them
    degree = []
    for s, e in spans:
        r = rows(s, e)
        degree.append(r.degree[: e - s])
        if cached is not None:
            cached.append(r)
    degree_t = torch.cat(degree)
    messages = []
    conv1, conv2 = gen.gcn.conv1, gen.gcn.conv2
    for i, (s, e) in enumerate(spans):
        r = cached[i] if cached is not None else rows(s, e)
        w_self, w_nb = r.weights(o.adjacency, degree_t)
        agg = r.aggregate(w_self, w_nb, _pad(x_att[s:e], block), x_att)
        h = torch.relu(_linear(agg, conv1.weight, conv1.bias))
        messages.append((h @ conv2.weight.T)[: e - s])
    return ReferenceGraph(x_att, sq_norm, ref_y, factors, float(sigma), degree_t,
                          torch.cat(messages), k, scale)


def batch_scale(batch_size: int, m: int) -> float:
    r"""Neighbour-weight factor that gives a row over all :math:`m` reference images the degree
    and self weight of a row in a training batch of :math:`B` = ``batch_size`` images.

    A training node sees itself and :math:`B' - 1` others, :math:`B' = \min(B, m)`, drawn at
    random; over the reference set it sees :math:`m - 1` (a reference image) or :math:`m` (a new
    image) others. Scaling every neighbour weight by

    .. math::
        f = \frac{B' - 1}{m - 1}

    makes the neighbours' total weight the expectation of a random batch's, so the degree
    :math:`d_u` and the self weight :math:`s_{uu}/d_u` of Eq. (6)-(7) match training, while
    every neighbour still contributes (no random subset: the code stays deterministic).

    Example (COCO's 5,000 training images in batches of 1,024; the demo's 1,000 in one batch):
        >>> round(batch_scale(1024, 5000), 4), batch_scale(1024, 1000)
        (0.2046, 1.0)
    """
    if m < 2:
        return 1.0
    return (min(int(batch_size), m) - 1) / (m - 1)


def _linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return F.linear(x, weight, bias)


@torch.no_grad()
def encode_inductive(
    gen: LAGNHGenerator,
    ref: ReferenceGraph,
    X: np.ndarray | Tensor,
    Y: np.ndarray | Tensor | None,
    block: int = 256,
) -> Tensor:
    """``"inductive"`` mode (see module doc). Returns :math:`Z` (N, r) on the model's device."""
    gen.eval()
    o = gen.opts
    device = next(gen.parameters()).device
    conv1, conv2 = gen.gcn.conv1, gen.gcn.conv2
    outs = []
    for s, e in _blocks(X.shape[0], block):
        xb = _pad(_to_device(X[s:e], device), block)
        yb = None
        if o.use_aux and Y is not None:
            yb = _pad(_to_device(Y[s:e], device), block)
        xbar = gen.attention.project(xb)
        x_att = _attend(gen, xbar, ref.attention, yb)
        rows = _Rows(gen, x_att, yb, ref.x_att, ref.sq_norm, ref.y, ref.sigma, ref.k, None,
                     ref.scale)
        w_self, w_nb = rows.weights(o.adjacency, ref.degree)
        h = torch.relu(_linear(rows.aggregate(w_self, w_nb, x_att, ref.x_att),
                               conv1.weight, conv1.bias))
        z = rows.aggregate(w_self, w_nb, h @ conv2.weight.T, ref.messages)
        if conv2.bias is not None:
            z = z + conv2.bias
        outs.append(z[: e - s])
    return torch.cat(outs, dim=0)
