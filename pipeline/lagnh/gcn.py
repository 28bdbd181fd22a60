r"""Two-layer graph convolutional generator, Eq. (6)–(7) of LAGNH (Section 3.4, Table 1).

Cui et al., "Two-pronged Strategy: Lightweight Augmented Graph Network Hashing for Scalable
Image Retrieval", ACM MM 2021, https://doi.org/10.1145/3474085.3475605.

The paper writes features as columns (:math:`X \in \mathbb{R}^{d \times n}`):

.. math::
    Z^{(1)} = \mathrm{ReLU}(W^{(1)} X^{att} \tilde{S})                         \qquad (6)

    Z = Z^{(2)} = W^{(2)} Z^{(1)} \tilde{S}                                   \qquad (7)

We store nodes as rows, so the same layer reads :math:`H' = \tilde{S} H W^\top (+ b)`: node
:math:`i` aggregates :math:`\sum_j \tilde{S}_{ij} h_j`. For the symmetric normalisation this is
identical to the paper; for the authors' row normalisation :math:`D^{-1}S` it is a weighted
mean over neighbours. Layer sizes: :math:`d' \to` ``hidden`` (ReLU) :math:`\to r` (none).

Eq. (6)–(7) write no bias. The paper variant keeps the usual GCN bias (Kipf & Welling) with
PyTorch's default ``nn.Linear`` initialisation; the authors' variant uses Xavier-uniform weights
and no bias. Dropout (0 in the paper variant, 0.5 in the authors') is applied to the input of
each graph convolution during training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Valid weight initialisations.
INITS = ("default", "xavier")


def graph_conv(s_norm: Tensor, h: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    r"""One graph convolution without activation: :math:`\tilde{S} H W^\top + b`.

    The product is associated as :math:`(\tilde{S}H)W^\top` when the input is narrower than the
    output and as :math:`\tilde{S}(HW^\top)` otherwise (fewer FLOPs; same value).

    Args:
        s_norm (Tensor): normalised graph :math:`\tilde{S}`, shape (n, m).
        h (Tensor): node features of the m source nodes, shape (m, f_in).
        weight (Tensor): :math:`W`, shape (f_out, f_in).
        bias (Tensor, optional): shape (f_out,). (default: ``None``)

    Shapes: (n, m), (m, f_in), (f_out, f_in) -> (n, f_out).

    Example (2 nodes, mean aggregation, identity weights):
        >>> s = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
        >>> graph_conv(s, torch.tensor([[2.0], [4.0]]), torch.eye(1))
        tensor([[3.],
                [4.]])
    """
    if weight.shape[1] <= weight.shape[0]:
        return F.linear(s_norm @ h, weight, bias)
    out = s_norm @ (h @ weight.T)
    return out if bias is None else out + bias


class GraphConv(nn.Module):
    r"""Graph convolution layer :math:`H' = \tilde{S} H W^\top + b` (Eq. 6/7 before activation).

    Args:
        in_features (int): :math:`f_{in}`.
        out_features (int): :math:`f_{out}`.
        bias (bool): learn an additive bias (default: ``True``).
        init (str): ``"default"`` (``nn.Linear``'s) or ``"xavier"`` (Xavier-uniform weights, zero
            bias). (default: ``"default"``)

    Shapes: ``h`` (m, f_in), ``s_norm`` (n, m) -> (n, f_out).
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, init: str = "default"
    ) -> None:
        super().__init__()
        if init not in INITS:
            raise ValueError(f"unknown init '{init}'; valid values: {INITS}")
        self.init = init
        self.lin = nn.Linear(in_features, out_features, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """(Re-)initialise weight and bias according to ``init``."""
        if self.init == "xavier":
            nn.init.xavier_uniform_(self.lin.weight)
            if self.lin.bias is not None:
                nn.init.zeros_(self.lin.bias)
        else:
            self.lin.reset_parameters()

    @property
    def weight(self) -> Tensor:
        return self.lin.weight

    @property
    def bias(self) -> Tensor | None:
        return self.lin.bias

    def forward(self, h: Tensor, s_norm: Tensor) -> Tensor:
        return graph_conv(s_norm, h, self.lin.weight, self.lin.bias)


class GCN(nn.Module):
    r"""The two-layer GCN generator of Eq. (6)–(7): :math:`d' \to` ``hidden`` (ReLU) :math:`\to r`.

    Args:
        in_features (int): :math:`d'`.
        hidden (int): width of GC layer 1 (1024 on COCO, 2048 on NUS-WIDE in Table 1).
        bits (int): code length :math:`r`.
        dropout (float): dropout on each layer's input while training (default: 0.0).
        bias (bool): see :class:`GraphConv` (default: ``True``).
        init (str): see :class:`GraphConv` (default: ``"default"``).

    Shapes: ``x_att`` (n, d'), ``s_norm`` (n, n) -> ``z`` (n, r).
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        bits: int,
        dropout: float = 0.0,
        bias: bool = True,
        init: str = "default",
    ) -> None:
        super().__init__()
        self.dropout = float(dropout)
        self.conv1 = GraphConv(in_features, hidden, bias=bias, init=init)
        self.conv2 = GraphConv(hidden, bits, bias=bias, init=init)

    def layer1(self, x_att: Tensor, s_norm: Tensor) -> Tensor:
        r"""Eq. (6): :math:`Z^{(1)} = \mathrm{ReLU}(\tilde{S} X^{att} W^{(1)\top} + b^{(1)})`."""
        h = F.dropout(x_att, self.dropout, self.training) if self.dropout > 0 else x_att
        return torch.relu_(self.conv1(h, s_norm))  # in place: the product is not saved

    def layer2(self, h1: Tensor, s_norm: Tensor) -> Tensor:
        r"""Eq. (7): :math:`Z = \tilde{S} Z^{(1)} W^{(2)\top} + b^{(2)}` (no activation)."""
        h = F.dropout(h1, self.dropout, self.training) if self.dropout > 0 else h1
        return self.conv2(h, s_norm)

    def forward(self, x_att: Tensor, s_norm: Tensor) -> Tensor:
        return self.layer2(self.layer1(x_att, s_norm), s_norm)
