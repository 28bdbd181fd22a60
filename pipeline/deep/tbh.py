r"""TBH: auto-encoding twin-bottleneck hashing (the paper's deep baseline).

Shen, Qin, Chen, Yu, Liu, Zhu, Shen & Shao, "Auto-Encoding Twin-Bottleneck Hashing", CVPR 2020
(https://arxiv.org/abs/2002.11930); the authors' TensorFlow 2 code (github.com/ymcidence/TBH)
was read for the settings below. TBH learns from features (the authors' code reads 4096-d
VGG16 fc7 features of CIFAR-10), as here.

Sources checked (2026-12-03): the formulas and settings below against the authors' code at
its HEAD 778dd1c (``layer/binary_activation.py``, ``layer/encodec.py``,
``layer/twin_bottleneck.py``, ``layer/gcn.py``, ``model/tbh.py``, ``train/tbh_train.py``,
``run_tbh.py``; the TBH files last changed in a4351e3) and their history. Of the paper only the
abstract and the start of the introduction could be read
(https://ar5iv.labs.arxiv.org/html/2002.11930,
https://deepai.org/publication/auto-encoding-twin-bottleneck-hashing: a variant of the
Wasserstein auto-encoder with a binary and a continuous bottleneck and a code-driven graph):
equation and section numbers not checked against the paper, so none are cited, nor values the
paper states.

Encoder. :math:`f = \operatorname{ReLU}(W_1 x + c_1)` (``middle_dim`` = 1024 units), then two
bottlenecks: the binary one :math:`b = \alpha(W_b f + c_b;\, \epsilon) \in \{0,1\}^M` (M =
``bits``) and the continuous one :math:`z = \sigma(W_z f + c_z) \in (0,1)^{C}` (C =
``cbn_dim`` = 512). :math:`\alpha` is the stochastic binary neuron (:func:`binary_neuron`;
the authors' ``binary_activation.py``): :math:`b = \mathbb 1[\sigma(u) > \epsilon]`,
back-propagated as :math:`\partial b / \partial u := \sigma(u)(1 - \sigma(u))` (their
"distributional derivative"). The authors' first commits sampled :math:`\epsilon \sim U(0, 1)`
in training; since 16bb617 their code fixes :math:`\epsilon = 1/2` (the sampling line of
``layer/encodec.py`` commented out), as here by default (``stochastic: false``; ``true``
samples); encoding always uses 1/2, so :math:`b = \mathbb 1[u > 0]`.

Code-driven graph (:func:`code_adjacency`, :func:`normalized_adjacency`; the authors'
``twin_bottleneck.py`` and ``gcn.py``): the minibatch's codes define
:math:`A_{ij} = (1 - \mathcal H(b_i, b_j)/M)^{\gamma}` (:math:`\gamma` = 1.4 in the authors'
code, ``adjacency_power`` here; the exponent the paper states was not checked),
self-connected, and one graph convolution passes :math:`z` over it:

.. math::
    z' = \sigma\big(D^{-1/2} A D^{-1/2} (z W_g + c_g)\big),
    \qquad D = \operatorname{diag}(A\mathbf 1).

Decoder: :math:`\hat x = W_4 \operatorname{ReLU}(W_3 z' + c_3) + c_4`, a linear output as in
the authors' code before its last commit; that commit (a4351e3) puts a ReLU on the output too,
:math:`\hat x = \operatorname{ReLU}(W_4 \operatorname{ReLU}(W_3 z' + c_3) + c_4)`, which this
implementation does not. Losses (the authors' ``train/tbh_train.py``): reconstruction
:math:`\tfrac12\lVert \hat X - X\rVert_F^2` over the batch (:func:`reconstruction_loss`), and the
Wasserstein auto-encoder's adversarial regulariser with two discriminators (one logistic unit
each): :math:`d_1` tells :math:`b` from Bernoulli(1/2) samples, :math:`d_2` tells :math:`z'`
from :math:`U(0,1)^C` samples (:func:`adversarial_loss`, binary cross-entropy). The
auto-encoder minimises reconstruction minus both discriminators' losses, the discriminators
minimise their losses; both updated from the same minibatch by Adam (learning rate 1e-4).

Settings (all optional): the authors' code unless said.
    middle_dim (int): 1024. cbn_dim (int): 512.
    adjacency_power (float): 1.4. stochastic (bool): false (above).
    lr (float): 1e-4 (both networks).
    batch_size (int): 256 (the authors' ``Dataset`` default and their ``run_tbh.py`` of
        f52991a; since 6b5ee20 ``run_tbh.py`` trains with 400).
    iterations (int): minibatch steps (default: ``100000``, the authors' ``max_iter``).
    block_rows (int): rows per block when encoding.

Shapes:
    fit: X (n, d) -> state; encode: X (N, d) -> bool (N, bits).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.baselines import check_bits, check_features, check_seed, resolve_params
from pipeline.deep import as_tensor, encode_torch, epoch_batches, number, positive_int, seeded

__all__ = ["DEFAULTS", "adversarial_loss", "binary_neuron", "code_adjacency", "encode", "fit",
           "normalized_adjacency", "reconstruction_loss"]

log = logging.getLogger("pipeline.deep.tbh")

METHOD = "tbh"
#: default parameters (the authors' code; module docstring)
DEFAULTS: dict[str, Any] = {
    "middle_dim": 1024, "cbn_dim": 512, "adjacency_power": 1.4, "stochastic": False,
    "lr": 1e-4, "batch_size": 256, "iterations": 100000,
}
#: keys a ``methods`` row may set (checked at start-up by :func:`pipeline.methods.check_params`)
PARAMS: tuple[str, ...] = (*DEFAULTS, "block_rows")
_OVERFLOW_MARGIN = 1e-8  # added to the degrees, as the authors' graph Laplacian


class _BinaryNeuron(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        prob = torch.sigmoid(logits)
        ctx.save_for_backward(prob)
        return (prob > eps).to(logits.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (prob,) = ctx.saved_tensors
        return grad * prob * (1 - prob), None


def binary_neuron(logits: torch.Tensor, eps: torch.Tensor | float = 0.5) -> torch.Tensor:
    r"""TBH's binary bottleneck: :math:`b = \mathbb 1[\sigma(u) > \epsilon]` in
    {0, 1}, with gradient :math:`\sigma(u)(1-\sigma(u))` passed to :math:`u`.

    Example:
        >>> u = torch.tensor([0.0, 2.0, -1.0], requires_grad=True)
        >>> b = binary_neuron(u); b.sum().backward()
        >>> b.tolist(), [round(g, 4) for g in u.grad.tolist()]
        ([0.0, 1.0, 0.0], [0.25, 0.105, 0.1966])
    """
    eps = torch.as_tensor(eps, dtype=logits.dtype).expand_as(logits)
    return _BinaryNeuron.apply(logits, eps)


def code_adjacency(b: torch.Tensor, power: float = 1.0) -> torch.Tensor:
    r"""Code-driven graph: :math:`A_{ij} = (1 - \mathcal H(b_i, b_j)/M)^{power}` for
    codes in {0, 1} (n, M); :math:`A_{ii} = 1`. Differentiable in ``b``.

    Example (M = 4: distances 0, 1, 4):
        >>> code_adjacency(torch.tensor([[1., 1., 0., 0.], [1., 1., 1., 0.], [0., 0., 1., 1.]]))
        tensor([[1.0000, 0.7500, 0.0000],
                [0.7500, 1.0000, 0.2500],
                [0.0000, 0.2500, 1.0000]])
    """
    M = b.shape[1]
    hamming = b @ (1 - b).T + (1 - b) @ b.T
    return torch.clamp(1 - hamming / M, min=0.0) ** power


def normalized_adjacency(A: torch.Tensor) -> torch.Tensor:
    r""":math:`D^{-1/2} A D^{-1/2}` with :math:`D = \operatorname{diag}(A\mathbf 1 + 10^{-8})`
    (the graph convolution's propagation matrix; the margin as the authors' ``gcn.py``).

    Example:
        >>> normalized_adjacency(torch.tensor([[1.0, 1.0], [1.0, 3.0]])).round(decimals=4)
        tensor([[0.5000, 0.3536],
                [0.3536, 0.7500]])
    """
    d = A.sum(dim=1) + _OVERFLOW_MARGIN
    s = d.rsqrt()
    return s[:, None] * A * s[None, :]


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    r""":math:`\tfrac12 \lVert \hat X - X\rVert_F^2` summed over the batch (authors' code).

    Example:
        >>> reconstruction_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])).item()
        2.5
    """
    return 0.5 * ((x_hat - x) ** 2).sum()


def adversarial_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    r"""A discriminator's loss on logits: :math:`\operatorname{mean} -\log\sigma(d(\text{real}))
    + \operatorname{mean} -\log(1 - \sigma(d(\text{fake})))` (binary cross-entropy).

    Example (logits 0: log 2 each):
        >>> round(adversarial_loss(torch.zeros(3, 1), torch.zeros(2, 1)).item(), 4)
        1.3863
    """
    return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))


class _TBH(torch.nn.Module):
    def __init__(self, d: int, bits: int, middle: int, cbn: int) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(d, middle)
        self.fc_b = torch.nn.Linear(middle, bits)
        self.fc_z = torch.nn.Linear(middle, cbn)
        self.gcn = torch.nn.Linear(cbn, cbn)
        self.dec1 = torch.nn.Linear(cbn, middle)
        self.dec2 = torch.nn.Linear(middle, d)
        self.dis_b = torch.nn.Linear(bits, 1)
        self.dis_z = torch.nn.Linear(cbn, 1)

    def code_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_b(F.relu(self.fc1(x)))

    def actor_parameters(self) -> list[torch.nn.Parameter]:
        mods = (self.fc1, self.fc_b, self.fc_z, self.gcn, self.dec1, self.dec2)
        return [p for m in mods for p in m.parameters()]

    def critic_parameters(self) -> list[torch.nn.Parameter]:
        return [*self.dis_b.parameters(), *self.dis_z.parameters()]


def _params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    p = resolve_params(params, DEFAULTS, METHOD)
    for key in ("middle_dim", "cbn_dim", "iterations"):
        p[key] = positive_int(p[key], key, METHOD)
    p["batch_size"] = positive_int(p["batch_size"], "batch_size", METHOD, low=2)
    p["lr"] = number(p["lr"], "lr", METHOD, strict=True)
    p["adjacency_power"] = number(p["adjacency_power"], "adjacency_power", METHOD, strict=True)
    if not isinstance(p["stochastic"], bool):
        raise ValueError(f"{METHOD}: stochastic must be true or false, got {p['stochastic']!r}")
    return p


def check_params(params: Mapping[str, Any]) -> None:
    """Refuse unknown keys and bad values before the workflow runs (pipeline.methods)."""
    _params(params)


def fit(
    X: np.ndarray,
    Y: np.ndarray | None,
    bits: int,
    params: Mapping[str, Any] | None,
    seed: int,
) -> dict[str, Any]:
    """Train TBH at ``bits`` on the training features ``X``; ``Y`` is ignored.

    Args:
        X (np.ndarray): training features (n, d).
        Y: auxiliary labels, ignored.
        bits (int): binary bottleneck width M >= 1.
        params (dict): see the module docstring.
        seed (int): seeds the initialisation, the batches and the prior samples.

    Returns:
        state dict: ``net`` (torch state_dict), ``middle_dim``, ``cbn_dim``, ``bits``, ``dim``,
        ``history`` (losses averaged over each pass over the training set).
    """
    p = _params(params)
    seed = check_seed(seed, METHOD)
    X = check_features(X, METHOD)
    n, d = X.shape
    bits = check_bits(bits, METHOD)
    Xt = as_tensor(X)
    history: list[dict[str, float]] = []
    with seeded(seed):
        net = _TBH(d, bits, p["middle_dim"], p["cbn_dim"])
        actor = torch.optim.Adam(net.actor_parameters(), lr=p["lr"])
        critic = torch.optim.Adam(net.critic_parameters(), lr=p["lr"])
        step, epoch = 0, 0
        while step < p["iterations"]:
            epoch += 1
            sums = {"reconstruction": 0.0, "actor": 0.0, "critic": 0.0}
            batches = epoch_batches(n, p["batch_size"])[: p["iterations"] - step]
            for idx in batches:
                x = Xt[idx]
                m = x.shape[0]
                f = F.relu(net.fc1(x))
                eps = torch.rand(m, bits) if p["stochastic"] else 0.5
                b = binary_neuron(net.fc_b(f), eps)
                z = torch.sigmoid(net.fc_z(f))
                adj = normalized_adjacency(code_adjacency(b, p["adjacency_power"]))
                z2 = torch.sigmoid(adj @ net.gcn(z))
                x_hat = net.dec2(F.relu(net.dec1(z2)))
                prior_b = (torch.rand(m, bits) > 0.5).float()
                prior_z = torch.rand(m, p["cbn_dim"])
                adv = (adversarial_loss(net.dis_b(prior_b), net.dis_b(b))
                       + adversarial_loss(net.dis_z(prior_z), net.dis_z(z2)))
                rec = reconstruction_loss(x_hat, x)
                actor_loss = rec - adv
                g_actor = torch.autograd.grad(actor_loss, net.actor_parameters(),
                                              retain_graph=True)
                g_critic = torch.autograd.grad(adv, net.critic_parameters())
                for prm, g in zip(net.actor_parameters(), g_actor, strict=True):
                    prm.grad = g
                for prm, g in zip(net.critic_parameters(), g_critic, strict=True):
                    prm.grad = g
                actor.step()
                critic.step()
                step += 1
                sums["reconstruction"] += rec.item() / m
                sums["actor"] += actor_loss.item()
                sums["critic"] += adv.item()
            history.append({"epoch": epoch, "step": step,
                            **{k: v / len(batches) for k, v in sums.items()}})
            if epoch % 10 == 0 or step >= p["iterations"]:
                log.info("%s: step %d/%d reconstruction/image %.4f critic %.4f", METHOD, step,
                         p["iterations"], history[-1]["reconstruction"], history[-1]["critic"])
    return {
        "method": METHOD, "bits": bits, "dim": d, "middle_dim": p["middle_dim"],
        "cbn_dim": p["cbn_dim"],
        "net": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "history": history,
    }


def encode(
    state: Mapping[str, Any],
    X: np.ndarray,
    Y: np.ndarray | None = None,
    params: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Codes of the binary bottleneck with epsilon = 1/2, ``1[u > 0]``, as bool (N, bits)."""
    keys = ("middle_dim", "cbn_dim", "net")
    net = None
    if isinstance(state, Mapping) and all(k in state for k in keys):
        net = _TBH(int(state["dim"]), int(state["bits"]), int(state["middle_dim"]),
                   int(state["cbn_dim"]))
        net.load_state_dict(state["net"])
        net.eval()
    return encode_torch(state, X, params, DEFAULTS, METHOD, keys, lambda x: net.code_logits(x))
