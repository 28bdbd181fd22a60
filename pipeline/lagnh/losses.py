r"""LAGNH objective, Eq. (8)–(12), and the reconstruction variants of Table 5.

Cui et al., "Two-pronged Strategy: Lightweight Augmented Graph Network Hashing for Scalable
Image Retrieval", ACM MM 2021, https://doi.org/10.1145/3474085.3475605, Section 3.4 and 4.6.

.. math::
    \mathcal{L}_{quan} = \lVert B - Z \rVert_F^2,\quad B = \mathrm{sgn}(Z)      \qquad (8)

    \mathcal{L}_{recons} = \lVert k S^a - [\cos(Z, Z)]_+ \rVert_F^2              \qquad (9)

    \min_G \max_D\; \mathbb{E}_{z' \sim \mathcal{N}(0, I)}[\log D(z')]
        + \mathbb{E}_{z}[\log(1 - D(G(z)))]                                        \qquad (10)

    \mathcal{L}_{cl} = -\sum_i \big[y_i^\top \log\delta(f(z_i))
        + (1 - y_i)^\top \log(1 - \delta(f(z_i)))\big]                             \qquad (11)

    \mathcal{L} = \mathcal{L}_{GAN} + \lambda_1 \mathcal{L}_{recons}
        + \lambda_2 \mathcal{L}_{quan} + \lambda_3 \mathcal{L}_{cl}                  \qquad (12)

**Normalisation (our choice, stated once).** Every squared Frobenius norm is divided by its number
of entries (a mean, as PyTorch's ``MSELoss``): Eq. (8) by :math:`n r`, Eq. (9) by :math:`n^2`, the
feature reconstruction by :math:`n d`. Eq. (11) is averaged over the :math:`n c` label entries and
the adversarial terms over nodes. The λ's of the paper (λ1 = 100, λ2 = 1, λ3 = 1) were tuned with
the authors' code, which uses exactly these mean reductions, so they carry over. Consequences:

* Eq. (8) with means equals the authors' ``MSE(z, sign z)``; the two differ only in
  :math:`\mathrm{sgn}(0)`: -1 in the paper (Eq. 13), 0 in ``torch.sign`` (the authors' code).
* Eq. (11) with a mean over entries equals PyTorch's ``MultiLabelSoftMarginLoss`` used by the
  authors (both are the mean binary cross-entropy); both kinds are kept as named switches.

**Readings of the paper.** Eq. (11) is written without a minus sign and applies
:math:`\delta(z_i)` (dimension :math:`r`) to :math:`y_i` (dimension :math:`c`); we read it as the
negative log-likelihood of a linear head :math:`f: \mathbb{R}^r \to \mathbb{R}^c` (the authors'
code does the same). For Eq. (10) the discriminator minimises binary cross-entropy with logits
(real :math:`z' \sim \mathcal{N}(0, I)` labelled 1, generated :math:`z` labelled 0) and the
generator uses the *non-saturating* form :math:`-\log D(z)` instead of :math:`\log(1 - D(z))`
(same fixed point, useful gradients early in training; the authors' code does the same).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: Valid classification losses.
CLS_LOSSES = ("bce", "soft_margin")


def sign_codes(z: Tensor, zero: float = -1.0) -> Tensor:
    r""":math:`\mathrm{sgn}(z)` with :math:`\mathrm{sgn}(0) =` ``zero`` (Eq. 13 uses -1).

    Example:
        >>> sign_codes(torch.tensor([0.3, 0.0, -2.0]))
        tensor([ 1., -1., -1.])
    """
    negative = torch.where(z < 0, -torch.ones_like(z), torch.full_like(z, zero))
    return torch.where(z > 0, torch.ones_like(z), negative)


def quantization_loss(z: Tensor, zero: float = -1.0) -> Tensor:
    r"""Eq. (8), mean over the :math:`n r` entries: :math:`\frac{1}{nr}\lVert B - Z\rVert_F^2`.

    :math:`B = \mathrm{sgn}(Z)` is a constant (no gradient through the sign).

    Args:
        z (Tensor): GCN outputs :math:`Z`, shape (n, r).
        zero (float): value of :math:`\mathrm{sgn}(0)`: -1 (paper) or 0 (``torch.sign``,
            authors) (default: -1).

    Example: :math:`z = (0.5, -2)`, :math:`B = (1, -1)`: :math:`(0.25 + 1)/2 = 0.625`.
        >>> quantization_loss(torch.tensor([[0.5, -2.0]]))
        tensor(0.6250)
    """
    b = sign_codes(z.detach(), zero)
    return (b - z).square().mean()


def cosine_similarity_matrix(z: Tensor, eps: float = 1e-8) -> Tensor:
    r""":math:`\cos(z_i, z_j)` for all pairs of rows (0 for a zero row). Shape (n, r) -> (n, n)."""
    zn = z / z.norm(dim=1, keepdim=True).clamp_min(eps)
    return zn @ zn.T


def cosine_reconstruction_loss(z: Tensor, target: Tensor, k: float = 1.0) -> Tensor:
    r"""Eq. (9), mean over the :math:`n^2` entries: :math:`\frac{1}{n^2}\lVert kT -
    [\cos(Z, Z)]_+\rVert_F^2`.

    With ``target`` :math:`T = S^a = YY^\top` this is the paper's Eq. (9); with
    :math:`T = [\cos(Y, Y)]_+` it is the authors' ``MSE(relu(cos(Z,Z)), k relu(cos(Y,Y)))``; with
    :math:`T = S` or :math:`S^v` it is the ``recons-S`` / ``recons-Sv`` ablations of Table 5.
    The target is a constant (no gradient flows into it). Written as ``mse_loss(relu(cos), kT)``:
    the same value as the formula, with one-pass backward kernels for the mean square and the
    clamp at 0.

    Example (2 nodes, :math:`z_1 = (1, 0)`, :math:`z_2 = (1, 1)`: :math:`[\cos]_+ =
    [[1, .7071], [.7071, 1]]`; :math:`T = [[1, 1], [1, 1]]`, k = 1:
    :math:`2(1 - .7071)^2/4 = 0.0429`):
        >>> z = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
        >>> cosine_reconstruction_loss(z, torch.ones(2, 2))
        tensor(0.0429)
    """
    return F.mse_loss(F.relu(cosine_similarity_matrix(z)), k * target.detach())


def inner_product_reconstruction_loss(z: Tensor, target: Tensor, k: float = 1.0) -> Tensor:
    r"""``recons-ZtZ`` (Table 5): :math:`\frac{1}{n^2}\lVert kS^a - Z^\top Z\rVert_F^2`
    (raw inner products of the GCN outputs, :math:`Z Z^\top` in our row layout)."""
    return (k * target - z @ z.T).square().mean()


def feature_reconstruction_loss(x: Tensor, x_hat: Tensor) -> Tensor:
    r"""``recons-feat`` (Table 5): :math:`\frac{1}{nd}\lVert X - \hat{X}\rVert_F^2` with
    :math:`\hat{X}` from a decoder of :math:`Z`."""
    return (x - x_hat).square().mean()


def discriminator_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    r"""Discriminator side of Eq. (10): BCE-with-logits, real (prior) = 1, generated = 0.

    .. math::
        -\frac{1}{n}\sum \log \delta(D(z')) - \frac{1}{n}\sum \log(1 - \delta(D(z)))

    Example: logits 0 everywhere give :math:`2\log 2 = 1.3863`.
        >>> discriminator_loss(torch.zeros(3, 1), torch.zeros(3, 1))
        tensor(1.3863)
    """
    real = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
    fake = F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
    return real + fake


def generator_adversarial_loss(d_fake: Tensor) -> Tensor:
    r"""Generator side of Eq. (10), non-saturating: :math:`-\frac{1}{n}\sum\log\delta(D(z))`."""
    return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))


def classification_loss(logits: Tensor, y: Tensor, kind: str = "bce") -> Tensor:
    r"""Eq. (11) through a linear head :math:`f(z_i) \in \mathbb{R}^c`, mean over :math:`nc`.

    Args:
        logits (Tensor): :math:`f(Z)`, shape (n, c).
        y (Tensor): auxiliary labels in {0, 1}, shape (n, c).
        kind (str): ``"bce"`` (paper: binary cross-entropy of :math:`\delta(f(z_i))`) or
            ``"soft_margin"`` (authors: ``MultiLabelSoftMarginLoss``, numerically the same
            quantity). (default: ``"bce"``)

    Example: logit 0 everywhere gives :math:`\log 2 = 0.6931`.
        >>> classification_loss(torch.zeros(2, 3), torch.tensor([[1.0, 0, 1], [0, 0, 0]]))
        tensor(0.6931)
    """
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, y)
    if kind == "soft_margin":
        return F.multilabel_soft_margin_loss(logits, y)
    raise ValueError(f"unknown classification loss '{kind}'; valid values: {CLS_LOSSES}")


def total_loss(
    gan: Tensor,
    recons: Tensor,
    quan: Tensor,
    cl: Tensor | None,
    lambda1: float,
    lambda2: float,
    lambda3: float,
) -> Tensor:
    r"""Eq. (12): :math:`\mathcal{L}_{GAN} + \lambda_1 \mathcal{L}_{recons} + \lambda_2
    \mathcal{L}_{quan} + \lambda_3 \mathcal{L}_{cl}` (``cl=None``: term absent, e.g. ``no-aux``).

    Example:
        >>> total_loss(torch.tensor(1.0), torch.tensor(0.01), torch.tensor(0.5), None, 100, 1, 1)
        tensor(2.5000)
    """
    out = gan + lambda1 * recons + lambda2 * quan
    return out if cl is None else out + lambda3 * cl
