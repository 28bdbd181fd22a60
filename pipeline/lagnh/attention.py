r"""Cross-modal attention denoising, Eq. (1)–(2) of the LAGNH paper.

Cui et al., "Two-pronged Strategy: Lightweight Augmented Graph Network Hashing for Scalable
Image Retrieval", ACM MM 2021, https://doi.org/10.1145/3474085.3475605, Section 3.2.

.. math::
    \alpha_{ij} = [\cos(\bar{\mathbf{x}}_i, \bar{\mathbf{y}}_j)]_+                 \qquad (1)

    \mathbf{x}^{att}_i = \frac{\sum_j \alpha_{ij}\,\bar{\mathbf{y}}_j}{\sum_j \alpha_{ij}}
                         + \bar{\mathbf{x}}_i                                      \qquad (2)

where :math:`\bar{\mathbf{x}}_i = W_x \mathbf{x}_i (+ b_x)` and
:math:`\bar{\mathbf{y}}_j = W_y \mathbf{y}_j (+ b_y)` are linear maps into :math:`d'` dimensions and
:math:`j` runs over the nodes of the current graph (the minibatch during training).

Two row normalisations of :math:`[\alpha_{ij}]_+` are provided:

* ``"sum"`` (paper, Eq. 2): :math:`\alpha_{ij} / \sum_j \alpha_{ij}`; a row whose scores are all
  zero gets zero weights, so :math:`\mathbf{x}^{att}_i = \bar{\mathbf{x}}_i` (no NaN).
* ``"l2"`` (authors' code, see REFERENCE.md): :math:`\alpha_{ij} / \lVert \alpha_{i\cdot} \rVert_2`.

The cosine of a zero vector is defined as 0 (each vector is divided by
:math:`\max(\lVert a\rVert, \epsilon)`), which keeps an all-zero auxiliary row (no detected
object, no bias) finite.

Speed: the auxiliary side has rank :math:`c+1 \ll d'`
(:math:`\bar{Y} = [Y, 1][W_y^\top; b_y^\top]`), so :func:`factorized_attention` evaluates
Eq. (1)–(2) through that factorisation; it is the same quantity as
:func:`cross_modal_attention` (tested to agree) at a fraction of the cost.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: Valid values of the attention row normalisation.
ATTENTION_NORMS = ("sum", "l2")

_EPS = 1e-8


def _unit_rows(a: Tensor, eps: float = _EPS) -> Tensor:
    r"""Rows scaled to unit L2 norm, :math:`a_i / \max(\lVert a_i\rVert, \epsilon)` (zero rows
    stay zero)."""
    return a / torch.linalg.vector_norm(a, dim=1, keepdim=True).clamp_min(eps)


def cosine_matrix(a: Tensor, b: Tensor, eps: float = _EPS) -> Tensor:
    r"""Pairwise cosine similarities :math:`\cos(a_i, b_j) = \hat{a}_i^\top \hat{b}_j` with
    :math:`\hat{a} = a / \max(\lVert a\rVert, \epsilon)`: 0 when either vector is zero.

    Shapes: ``a`` (n, d), ``b`` (m, d) -> (n, m).

    Example:
        >>> a = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
        >>> cosine_matrix(a, torch.tensor([[1.0, 1.0]]))
        tensor([[0.7071],
                [0.0000]])
    """
    return _unit_rows(a, eps) @ _unit_rows(b, eps).T


def normalize_attention(alpha: Tensor, norm: str = "sum") -> Tensor:
    r"""Row-normalise non-negative attention scores (the fraction in Eq. 2).

    Args:
        alpha (Tensor): scores :math:`[\cos]_+ \ge 0`, shape (n, m).
        norm (str): ``"sum"`` divides by :math:`\sum_j \alpha_{ij}` (paper), ``"l2"`` by
            :math:`\lVert\alpha_{i\cdot}\rVert_2` (authors). All-zero rows stay zero.
            (default: ``"sum"``)
    """
    if norm == "sum":
        return alpha / alpha.sum(dim=1, keepdim=True).clamp_min(1e-12)
    if norm == "l2":
        return alpha / alpha.norm(dim=1, keepdim=True).clamp_min(1e-12)
    raise ValueError(f"unknown attention norm '{norm}'; valid values: {ATTENTION_NORMS}")


def cross_modal_attention(xbar: Tensor, ybar: Tensor, norm: str = "sum") -> Tensor:
    r"""Attentive features, Eq. (1)–(2), written out directly (the reference formula).

    .. math::
        \mathbf{x}^{att}_i = \sum_j \frac{[\cos(\bar{\mathbf{x}}_i, \bar{\mathbf{y}}_j)]_+}
        {\sum_{j'} [\cos(\bar{\mathbf{x}}_i, \bar{\mathbf{y}}_{j'})]_+}\,\bar{\mathbf{y}}_j
        + \bar{\mathbf{x}}_i

    Args:
        xbar (Tensor): linearly mapped image features :math:`\bar{X}`, shape (n, d').
        ybar (Tensor): linearly mapped auxiliary labels :math:`\bar{Y}`, shape (m, d').
        norm (str): row normalisation, see :func:`normalize_attention` (default: ``"sum"``).

    Shapes: (n, d'), (m, d') -> (n, d').

    Example (3 images, 2 auxiliary rows, d' = 2):
        >>> xbar = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
        >>> ybar = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
        >>> cross_modal_attention(xbar, ybar)  # row 3: all cosines < 0 -> x_att = xbar
        tensor([[ 2.5858,  0.4142],
                [ 1.0000,  2.0000],
                [-1.0000, -1.0000]])
    """
    alpha = cosine_matrix(xbar, ybar).clamp_min(0.0)
    return normalize_attention(alpha, norm) @ ybar + xbar


def unit_coefficients(coef: Tensor, basis: Tensor) -> Tensor:
    r""":math:`c_j / \max(\lVert c_j B\rVert, \epsilon)`: rows scaled so that :math:`c_j B` has
    unit norm (cosines against them need no further division). Shapes: (m, q), (q, d') -> (m, q).
    """
    return coef / (coef @ basis).norm(dim=1, keepdim=True).clamp_min(_EPS)


def factorized_attention(
    xbar: Tensor,
    coef: Tensor,
    basis: Tensor,
    norm: str = "sum",
    self_coef: Tensor | None = None,
    coef_unit: Tensor | None = None,
) -> Tensor:
    r"""Eq. (1)–(2) with :math:`\bar{Y} = C B` given in factored form (rank :math:`q \ll d'`).

    Computes ``cross_modal_attention(xbar, coef @ basis, norm)`` without forming any (n, m) × d'
    product: :math:`\cos(\bar{x}_i, \bar{y}_j) = (\hat{x}_i^\top B^\top)\,c_j /
    \lVert c_j B\rVert` and :math:`\sum_j \alpha_{ij}\bar{y}_j / s_i = ((\alpha C)_i / s_i) B`,
    so the row normalisation :math:`s_i` is applied to (n, q) instead of (n, m) entries; the only
    (n, m) elementwise work is the ReLU and the row sum.

    Args:
        xbar (Tensor): :math:`\bar{X}`, shape (n, d').
        coef (Tensor): :math:`C`, shape (m, q), e.g. ``[Y, 1]``.
        basis (Tensor): :math:`B`, shape (q, d'), e.g. ``[W_y^T; b_y^T]``.
        norm (str): row normalisation (default: ``"sum"``).
        self_coef (Tensor, optional): shape (n, q). When given, node :math:`i` also attends to
            its own :math:`\bar{y}_i = c^{self}_i B` (used by the inductive encoding, where a new
            image attends to the training set plus itself). (default: ``None``)
        coef_unit (Tensor, optional): precomputed :func:`unit_coefficients` of ``coef`` (the
            inductive encoding reuses them for every block). (default: ``None``)

    Shapes: (n, d'), (m, q), (q, d') -> (n, d').
    """
    if norm not in ATTENTION_NORMS:
        raise ValueError(f"unknown attention norm '{norm}'; valid values: {ATTENTION_NORMS}")
    xb = _unit_rows(xbar) @ basis.T  # (n, q)
    if coef_unit is None:
        coef_unit = unit_coefficients(coef, basis)  # (m, q)
    alpha = torch.relu_(xb @ coef_unit.T)  # Eq. (1), (n, m); in place on a fresh product
    if norm == "sum":  # the row sums come out of the same GEMM through a ones column
        ones = torch.ones(coef.shape[0], 1, dtype=coef.dtype, device=coef.device)
        mixed_and_sum = alpha @ torch.cat([coef, ones], dim=1)  # (n, q + 1)
        mixed, scale = mixed_and_sum[:, :-1], mixed_and_sum[:, -1:]
    else:
        mixed = alpha @ coef  # (n, q)
        scale = torch.linalg.vector_norm(alpha, dim=1, keepdim=True)
    if self_coef is not None:
        self_unit = unit_coefficients(self_coef, basis)
        self_alpha = (xb * self_unit).sum(dim=1, keepdim=True).clamp_min(0.0)
        mixed = mixed + self_alpha * self_coef
        scale = scale + self_alpha if norm == "sum" else torch.sqrt(scale**2 + self_alpha**2)
    return (mixed / scale.clamp_min(1e-12)) @ basis + xbar


class CrossModalAttention(nn.Module):
    r"""Cross-modal attention module, Eq. (1)–(2): two linear maps plus the attention read-out.

    Args:
        in_features (int): image feature dimension :math:`d`.
        aux_features (int): number of auxiliary classes :math:`c`.
        d_att (int): attention dimension :math:`d'`.
        norm (str): ``"sum"`` (paper) or ``"l2"`` (authors) (default: ``"sum"``).
        attend (bool): if ``False`` the module only maps :math:`x \mapsto \bar{x}` (the ``no-att``
            and ``no-aux`` ablations); no :math:`W_y` is created. (default: ``True``)

    Shapes: ``x`` (n, d), ``y`` (n, c) -> ``x_att`` (n, d').
    """

    def __init__(
        self,
        in_features: int,
        aux_features: int,
        d_att: int,
        norm: str = "sum",
        attend: bool = True,
    ) -> None:
        super().__init__()
        if norm not in ATTENTION_NORMS:
            raise ValueError(f"unknown attention norm '{norm}'; valid values: {ATTENTION_NORMS}")
        self.norm = norm
        self.attend = attend
        self.lin_x = nn.Linear(in_features, d_att)
        self.lin_y = nn.Linear(aux_features, d_att) if attend else None

    def project(self, x: Tensor) -> Tensor:
        r""":math:`\bar{x} = W_x x + b_x`, shape (n, d) -> (n, d')."""
        return self.lin_x(x)

    def aux_factors(self, y: Tensor) -> tuple[Tensor, Tensor]:
        r"""Factors :math:`(C, B)` with :math:`\bar{Y} = C B = [Y, 1][W_y^\top; b_y^\top]`."""
        assert self.lin_y is not None
        ones = torch.ones(y.shape[0], 1, dtype=y.dtype, device=y.device)
        coef = torch.cat([y, ones], dim=1)
        basis = torch.cat([self.lin_y.weight.T, self.lin_y.bias.unsqueeze(0)], dim=0)
        return coef, basis

    def attend_to(self, xbar: Tensor, y_ref: Tensor, y_self: Tensor | None = None) -> Tensor:
        """Eq. (2) for images ``xbar`` attending to the auxiliary rows ``y_ref`` (+ their own)."""
        if self.lin_y is None:
            return xbar
        coef, basis = self.aux_factors(y_ref)
        self_coef = None if y_self is None else self.aux_factors(y_self)[0]
        if self_coef is None and coef.shape[1] >= basis.shape[1]:
            return cross_modal_attention(xbar, coef @ basis, self.norm)
        return factorized_attention(xbar, coef, basis, self.norm, self_coef)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Attentive features of a set of nodes attending to each other's auxiliary labels."""
        return self.attend_to(self.project(x), y)

    def extra_repr(self) -> str:
        return f"norm={self.norm!r}, attend={self.attend}"
