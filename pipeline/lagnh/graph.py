r"""Augmented semantic graph, Eq. (3)–(5), and its normalisation (Section 3.3–3.4 of LAGNH).

Cui et al., "Two-pronged Strategy: Lightweight Augmented Graph Network Hashing for Scalable
Image Retrieval", ACM MM 2021, https://doi.org/10.1145/3474085.3475605.

.. math::
    S^v_{ij} = \exp\!\left(-\frac{\lVert \mathbf{x}^{att}_i - \mathbf{x}^{att}_j\rVert^2}
               {2\sigma^2}\right)                                              \qquad (3)

    S^a_{ij} = \mathbf{y}_i^\top \mathbf{y}_j                                  \qquad (4)

    \mathbf{S} = \mu\, S^v + S^a                                               \qquad (5)

    \tilde{\mathbf{S}} = D^{-1/2} \mathbf{S} D^{-1/2}, \quad D_{ii} = \textstyle\sum_j S_{ij}
    \quad\text{(paper; the authors' code uses } D^{-1}\mathbf{S}\text{)}

All functions are pure and dense over the nodes of one graph (a minibatch of at most
``batch_size`` nodes, so memory is bounded by ``batch_size**2``).

**Default bandwidth.** The paper leaves :math:`\sigma` open. When ``sigma`` is ``None`` we use
:func:`default_sigma`: :math:`\sigma` is calibrated on each graph so that a node has on average
:math:`k = 7` neighbours' worth of visual weight,

.. math::
    \frac{1}{|R|}\sum_{i \in R} \sum_{j \ne i} S^v_{ij}(\sigma) = k,

(:math:`R` = the first 64 nodes of the shuffled batch; grid search on :math:`\log\sigma`;
:math:`k = (n-1)/2` for graphs of :math:`n \le 15` nodes; no gradient) — the global analogue of
t-SNE's perplexity calibration, with k = 7 as in the self-tuning spectral clustering of
Zelnik-Manor & Perona (NIPS 2004). Why not a distance-scale rule: features of a few hundred
dimensions have concentrated distances (the 7th-nearest-neighbour distance is close to the mean
distance), so a :math:`\sigma` taken from the mean pairwise distance or a k-th neighbour distance
gives :math:`S^v \approx 0.5` for almost every pair; the GCN then averages every node over the
whole batch and all codes collapse to one (observed on synthetic data: 1 distinct code for
2,000 training images with either rule; the calibrated rule keeps the visual graph local).

**Denormals.** Kernel values below ``1e-30`` are set to exactly 0: :math:`e^{-d^2/2\sigma^2}`
otherwise produces subnormal floats (e.g. with the authors' :math:`\sigma^2 = 1`), which make
CPU matrix products up to ~200× slower; the change in :math:`S^v` is below 1e-30.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: Valid graph compositions: Eq. (5), S^v only (authors, ``only-Sv``, ``no-aux``), S^a only.
GRAPH_MODES = ("fused", "visual", "aux")
#: Valid adjacency normalisations.
ADJACENCY_MODES = ("sym", "row")
#: Target mean visual degree of the default bandwidth rule (k = 7 as in Zelnik-Manor & Perona).
SIGMA_NEIGHBOR = 7
#: Kernel values at or below this are set to 0 (no subnormal floats).
KERNEL_FLOOR = 1e-30
#: Exponents are clamped here before ``exp`` where only sums are needed: e^-87 ≈ 1.6e-38 is
#: still a normal float (smallest normal: 1.2e-38), so no subnormal arithmetic.
_EXP_MIN = -87.0
#: Rows of the batch the default bandwidth rule reads (:func:`sigma_from_squared_distances`).
SIGMA_ROWS = 64


def squared_distances(a: Tensor, b: Tensor | None = None) -> Tensor:
    r"""Pairwise squared Euclidean distances :math:`\lVert a_i - b_j \rVert^2`, clamped at 0.

    Uses :math:`\lVert a\rVert^2 + \lVert b\rVert^2 - 2a^\top b` (one matmul, then
    :func:`squared_from_gram`).

    Shapes: (n, d), (m, d) -> (n, m); ``b=None`` means ``b = a`` (diagonal set to exactly 0).
    """
    norms = a.square().sum(dim=1)
    if b is None:
        return squared_from_gram(a @ a.T, norms, norms)
    return squared_from_gram(a @ b.T, norms, b.square().sum(dim=1), same_nodes=False)


def default_sigma(x: Tensor, k: float = SIGMA_NEIGHBOR) -> Tensor:
    r"""Bandwidth rule used when ``sigma`` is not set: mean visual degree calibrated to ``k``.

    .. math::
        \frac{1}{|R|}\sum_{i \in R}\sum_{j \ne i}
        \exp\!\left(-\frac{\lVert x_i - x_j\rVert^2}{2\sigma^2}\right) = k

    over the rows :math:`R` = the first 64 nodes (see :func:`sigma_from_squared_distances`).
    Computed under ``no_grad``. Returns 1.0 for ``n < 2`` or when all nodes coincide.

    Shapes: (n, d) -> scalar tensor.

    Example (points 0, 1, 3 on a line: :math:`k` is capped at :math:`(n-1)/2 = 1`; the mean
    over nodes of :math:`\sum_{j \ne i} S^v_{ij}` at the returned :math:`\sigma` is 1):
        >>> x = torch.tensor([[0.0], [1.0], [3.0]])
        >>> sigma = default_sigma(x)
        >>> round(float((gaussian_similarity(x, sigma).sum(1) - 1).mean()), 4)
        1.0
    """
    with torch.no_grad():
        return sigma_from_squared_distances(squared_distances(x.detach()), k)


def sigma_from_squared_distances(
    sq_rows: Tensor, k: float = SIGMA_NEIGHBOR, rows: int = SIGMA_ROWS, stages: int = 4,
    grid: int = 8
) -> Tensor:
    r""":func:`default_sigma` from squared distances (no gradient, no host synchronisation).

    The mean degree is increasing in :math:`\sigma`; it is bracketed on :math:`\log\sigma`
    between :math:`e^{-3}\times` the smallest and :math:`e^{3}\times` the largest distance and
    refined by ``stages`` grid searches of ``grid`` points each (a few batched kernels instead of
    a sequential bisection), then interpolated linearly inside the last bracket.

    Args:
        sq_rows (Tensor): squared distances of some nodes (rows) to all n nodes (columns), each
            row containing its own node at distance 0, shape (r, n) (e.g. the full (n, n)).
        k (float): target mean number of visual neighbours (default: 7), capped at (n-1)/2.
        rows (int): only the first ``rows`` rows are used (default: 64).
        stages (int): grid refinements (default: 4).
        grid (int): points per grid (default: 8).
    """
    with torch.no_grad():
        n = sq_rows.shape[1]
        one = torch.ones((), dtype=sq_rows.dtype, device=sq_rows.device)
        if n < 2:
            return one
        sub = sq_rows[:rows].detach().clamp_min(0.0)
        target = min(float(k), (n - 1) / 2.0)
        positive = sub.masked_fill(sub <= 0, float("inf")).min()
        has_pos = torch.isfinite(positive)
        positive = torch.where(has_pos, positive, one)
        lo = (0.5 * positive.log() - 3.0).reshape(1)  # log sigma bracket
        hi = (0.5 * sub.max().clamp_min(1e-30).log() + 3.0).reshape(1)
        steps = torch.linspace(0.0, 1.0, grid, dtype=sub.dtype, device=sub.device)
        for _ in range(stages):
            log_sigma = lo + (hi - lo) * steps  # (grid,)
            coef = -0.5 * torch.exp(-2.0 * log_sigma)
            # exponents below -87 would give subnormal floats (slow on CPU); e^-87 adds < 2e-38
            arg = (sub.unsqueeze(0) * coef.view(-1, 1, 1)).clamp_min_(_EXP_MIN)
            degree = arg.exp_().sum(dim=2).mean(dim=1) - 1
            below = (degree <= target).sum().clamp(1, grid - 1).reshape(1)
            lo, hi = log_sigma.gather(0, below - 1), log_sigma.gather(0, below)
            d_lo, d_hi = degree.gather(0, below - 1), degree.gather(0, below)
        # linear interpolation of the degree inside the last bracket
        t = ((target - d_lo) / (d_hi - d_lo).clamp_min(1e-30)).clamp(0.0, 1.0)
        return torch.where(has_pos, torch.exp(lo + t * (hi - lo)).reshape(()), one)


def squared_from_gram(gram: Tensor, norms_rows: Tensor, norms: Tensor,
                      out: Tensor | None = None, same_nodes: bool = True) -> Tensor:
    r""":math:`\max(\lVert x_i\rVert^2 + \lVert x_j\rVert^2 - 2 x_i^\top x_j, 0)` from a Gram
    matrix (rows i: ``norms_rows``, columns j: ``norms``), computed as
    :math:`(-2G + n_i) + n_j`. ``same_nodes``: row i is node i
    of the columns, so entry (i, i) is set to exactly 0. In place when ``out`` is ``gram``.

    Shapes: (r, m), (r,), (m,) -> (r, m).
    """
    sq = gram.mul(-2.0) if out is None else gram.mul_(-2.0)
    sq.add_(norms_rows.unsqueeze(1)).add_(norms.unsqueeze(0)).clamp_min_(0.0)
    if same_nodes:
        sq.diagonal().fill_(0.0)  # rows i < r: entry (i, i)
    return sq


def gaussian_kernel(sq_dist: Tensor, sigma: float | Tensor) -> Tensor:
    r"""Eq. (3) from squared distances: :math:`\exp(-d^2 / (2\sigma^2))`, values at or below
    :data:`KERNEL_FLOOR` set to 0."""
    return F.threshold(torch.exp(sq_dist / (-2.0 * sigma * sigma)), KERNEL_FLOOR, 0.0)


def gaussian_similarity(x: Tensor, sigma: float | Tensor | None = None) -> Tensor:
    r"""Visual similarity graph :math:`S^v`, Eq. (3).

    Args:
        x (Tensor): attentive features :math:`X^{att}`, shape (n, d').
        sigma (float, optional): bandwidth :math:`\sigma`; ``None`` uses :func:`default_sigma`.
            (default: ``None``)

    Shapes: (n, d') -> (n, n), symmetric with unit diagonal.

    Example (points 0 and (3, 4), :math:`\sigma = 5`: :math:`e^{-25/50} = 0.6065`):
        >>> gaussian_similarity(torch.tensor([[0.0, 0.0], [3.0, 4.0]]), sigma=5.0)
        tensor([[1.0000, 0.6065],
                [0.6065, 1.0000]])
    """
    if sigma is None:
        sigma = default_sigma(x)
    return gaussian_kernel(squared_distances(x), sigma)


def aux_similarity(y: Tensor, y2: Tensor | None = None) -> Tensor:
    r"""Auxiliary similarity graph :math:`S^a = Y Y^\top`, Eq. (4) (shared-label counts).

    Shapes: (n, c) -> (n, n); with ``y2`` (m, c) -> (n, m).

    Example:
        >>> aux_similarity(torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))
        tensor([[2., 1., 0.],
                [1., 2., 0.],
                [0., 0., 0.]])
    """
    return y @ (y if y2 is None else y2).T


def cosine_aux_similarity(y: Tensor) -> Tensor:
    r""":math:`[\cos(Y, Y)]_+` — the authors' reconstruction target in place of :math:`S^a`.

    A zero row has cosine 0 with everything (including itself).
    """
    yn = y / y.norm(dim=1, keepdim=True).clamp_min(1e-8)
    return (yn @ yn.T).clamp_min(0.0)


def augmented_graph(
    s_v: Tensor | None, s_a: Tensor | None, mu: float = 1.0, mode: str = "fused"
) -> Tensor:
    r"""Augmented semantic graph, Eq. (5): :math:`\mathbf{S} = \mu S^v + S^a`.

    Args:
        s_v (Tensor, optional): visual graph :math:`S^v` (needed unless ``mode="aux"``).
        s_a (Tensor, optional): auxiliary graph :math:`S^a` (needed unless ``mode="visual"``).
        mu (float): fusion factor :math:`\mu` (default: 1.0). Only used by ``"fused"``.
        mode (str): ``"fused"`` (Eq. 5), ``"visual"`` (:math:`S = S^v`: the authors' fusion
            factor 0, ``only-Sv``, ``no-aux``) or ``"aux"`` (:math:`S = S^a`, ``only-Sa``).
            (default: ``"fused"``)

    Example:
        >>> augmented_graph(torch.eye(2), torch.ones(2, 2), mu=0.5)
        tensor([[1.5000, 1.0000],
                [1.0000, 1.5000]])
    """
    if mode == "fused":
        if s_v is None or s_a is None:
            raise ValueError("augmented_graph(mode='fused') needs both s_v and s_a")
        return mu * s_v + s_a
    if mode == "visual":
        if s_v is None:
            raise ValueError("augmented_graph(mode='visual') needs s_v")
        return s_v
    if mode == "aux":
        if s_a is None:
            raise ValueError("augmented_graph(mode='aux') needs s_a")
        return s_a
    raise ValueError(f"unknown graph mode '{mode}'; valid values: {GRAPH_MODES}")


def degree_scaling(deg: Tensor, mode: str = "sym") -> Tensor:
    r"""Per-node factor :math:`D^{-1/2}` (``"sym"``) or :math:`D^{-1}` (``"row"``); 0 where
    :math:`D_{ii} = 0` (isolated node, e.g. an all-zero label row under ``only-Sa``)."""
    if mode == "sym":
        inv = deg.rsqrt()
    elif mode == "row":
        inv = deg.reciprocal()
    else:
        raise ValueError(f"unknown adjacency normalisation '{mode}'; valid values: "
                         f"{ADJACENCY_MODES}")
    return inv.masked_fill(deg <= 0, 0.0)


def normalized_adjacency(s: Tensor, mode: str = "sym") -> Tensor:
    r"""Normalised graph :math:`\tilde{\mathbf{S}}` fed to the GCN, Eq. (6)–(7).

    .. math::
        \tilde{S} = D^{-1/2} S D^{-1/2} \;(\texttt{"sym"}, \text{paper}), \qquad
        \tilde{S} = D^{-1} S \;(\texttt{"row"}, \text{authors}), \qquad D_{ii} = \sum_j S_{ij}

    Rows/columns of degree-0 nodes are set to 0 (no division by zero, no NaN).

    Args:
        s (Tensor): non-negative graph :math:`S`, shape (n, n).
        mode (str): ``"sym"`` or ``"row"`` (default: ``"sym"``).

    Shapes: (n, n) -> (n, n).

    Example (3-node path graph, degrees 1, 2, 1 -> off-diagonal :math:`1/\sqrt{2}`):
        >>> normalized_adjacency(torch.tensor([[0.0, 1, 0], [1, 0, 1], [0, 1, 0]]))
        tensor([[0.0000, 0.7071, 0.0000],
                [0.7071, 0.0000, 0.7071],
                [0.0000, 0.7071, 0.0000]])
    """
    inv = degree_scaling(s.sum(dim=1), mode)
    if mode == "sym":
        return inv.unsqueeze(1) * s * inv.unsqueeze(0)
    return inv.unsqueeze(1) * s


def normalized_gaussian_graph(
    x: Tensor,
    s_a: Tensor | None = None,
    mu: float = 1.0,
    sigma: float | Tensor | None = None,
    adjacency: str = "sym",
    sigma_k: float = SIGMA_NEIGHBOR,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r""":math:`\tilde{S}`, :math:`S^v`, :math:`S` and :math:`\sigma` from attentive features
    (training path).

    Same value as ``normalized_adjacency(augmented_graph(gaussian_similarity(x, sigma), s_a, mu,
    "fused" if s_a is not None else "visual"), adjacency)``, written as that composition in plain
    torch (autograd derives the backward) with the squared distances computed once: the default
    bandwidth rule reads the same matrix, without gradient. :math:`S^v` and :math:`S` are returned
    without gradient (used only as reconstruction targets). :math:`S^a` is a constant.

    Args:
        x (Tensor): :math:`X^{att}`, shape (n, d').
        s_a (Tensor, optional): :math:`S^a`; ``None`` gives :math:`S = S^v`. (default: ``None``)
        mu (float): fusion factor of Eq. (5) (default: 1.0).
        sigma (float, optional): bandwidth; ``None`` uses :func:`default_sigma`.
        adjacency (str): ``"sym"`` or ``"row"`` (default: ``"sym"``).
        sigma_k (float): target mean visual degree of the default bandwidth rule
            (:func:`default_sigma`, default: 7); unused when ``sigma`` is given.

    Shapes: (n, d') -> ((n, n), (n, n), (n, n), ()).
    """
    if adjacency not in ADJACENCY_MODES:
        raise ValueError(f"unknown adjacency normalisation '{adjacency}'; valid values: "
                         f"{ADJACENCY_MODES}")
    s_a = None if s_a is None else s_a.detach()
    sq = squared_distances(x)
    if sigma is None:
        sigma = sigma_from_squared_distances(sq.detach(), sigma_k)
    else:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).detach()
    s_v = gaussian_kernel(sq, sigma)  # Eq. (3)
    s = augmented_graph(s_v, s_a, mu, "visual" if s_a is None else "fused")  # Eq. (5)
    return normalized_adjacency(s, adjacency), s_v.detach(), s.detach(), sigma
