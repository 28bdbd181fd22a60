r"""SSDH: semantic structure-based unsupervised deep hashing (the paper's deep baseline).

Yang, Deng, Liu, Liu & Tao, "Semantic Structure-based Unsupervised Deep Hashing", IJCAI 2018
(https://doi.org/10.24963/ijcai.2018/148); the authors' TensorFlow code
(github.com/yangerkun/IJCAI2018_SSDH) was read for the settings below.

Sources checked (2026-12-03): the formulas and settings below against the authors' code
(``main.py``, ``my_generator.py``). Of the paper only the abstract could be read
(https://www.ijcai.org/proceedings/2018/148, and the opening of a text copy of the PDF on
object.cloud.sdsc.edu, ``ml-papers-txt/IJCAI/2018``): it confirms the cosine distances of
deep features, the two half Gaussians, the similar / dissimilar pairs and a pairwise loss;
equation and section numbers not checked against the paper, so none are cited.

Semantic structure. The cosine distances :math:`d_{ij}` between the deep features of
the training images have a skewed, unimodal histogram that two half Gaussians fit: one left
of the histogram's peak :math:`p`, one right of it. Each half is mirrored about :math:`p` and
fitted by a Gaussian (:func:`half_gaussian_fit`: mean :math:`p`, standard deviations
:math:`\sigma_l`, :math:`\sigma_r`); pairs much closer than the others are similar, pairs much
farther dissimilar, the rest left out (:func:`semantic_similarity`; as the authors'
``main.py``):

.. math::
    S_{ij} = \begin{cases} 1 & d_{ij} < m_l - \alpha\sigma_l \\
                          -1 & d_{ij} > m_r + \beta\sigma_r \\ 0 & \text{otherwise}\end{cases}

with :math:`\alpha = \beta = 2` (the authors' code).

Hashing network and loss. A network maps an image to :math:`h_i =
\tanh(\cdot) \in (-1, 1)^r` and is trained so that code inner products reproduce
:math:`S` on the pairs it defines (the binary codes relaxed by tanh, :func:`pairwise_loss`;
the loss as the authors' ``main.py``):

.. math::
    \min \frac{1}{n_b^2}\sum_{i,j} |S_{ij}| \Big(\frac1r h_i^\top h_j - S_{ij}\Big)^2

over the pairs of each minibatch; codes are :math:`b = \operatorname{sgn}(h)`.

On features. The authors' code fine-tunes VGG16 from the images (which network the paper
names was not checked): its similarity is computed on the pretrained fc7 features (after the
ReLU, no dropout), and a new hash layer (r units, tanh, weights and biases drawn from a normal
of std 0.001 truncated at 2 std) sits on fc7, with the whole pretrained VGG16 (convolutional
layers, fc6, fc7) trained along (dropout 0.5 after fc6 and fc7). Here the pipeline's features
stand for fc7: the similarity is computed on them, and the network is the hash layer on them
(``hidden`` ReLU layers with dropout 0.5 in between may stand for the fine-tuned fc6/fc7).

Settings (all optional): the authors' code unless said.
    alpha, beta (float): 2, 2 (the multiples of sigma above; ``main.py``'s ``2*l_std``,
        ``2*r_std``).
    bin_width (float): histogram bin width locating the peak (default: ``0.01``, 100 bins on
        [0, 1]).
    hidden (list[int]): hidden widths (default: ``[]``: the hash layer on the features, as on
        fc7; measured on the demo at 32 bits, ``[1024]`` scored lower, 0.290 vs 0.315).
    dropout (float): dropout of the hidden layers (default: ``0.5``).
    lr (float): Adam learning rate (default: ``1e-3``).
    adam_eps (float): Adam's epsilon (default: ``1.0``, the authors' value).
    batch_size (int): default ``24``.
    epochs (int): default ``10`` (the authors' ``pre_epochs``; their unused ``num_epochs``
        is 100).
    block_rows (int): rows per block when encoding.

Shapes:
    fit: X (n, d) -> state; encode: X (N, d) -> bool (N, bits). The similarity is n x n.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from pipeline.baselines import check_bits, check_features, check_seed, resolve_params
from pipeline.deep import (
    as_tensor,
    encode_torch,
    epoch_batches,
    network_shape,
    number,
    positive_int,
    seeded,
)

__all__ = ["DEFAULTS", "cosine_distances", "encode", "fit", "half_gaussian_fit",
           "pairwise_loss", "semantic_similarity"]

log = logging.getLogger("pipeline.deep.ssdh")

METHOD = "ssdh"
#: default parameters (module docstring)
DEFAULTS: dict[str, Any] = {
    "alpha": 2.0, "beta": 2.0, "bin_width": 0.01, "hidden": [], "dropout": 0.5,
    "lr": 1e-3, "adam_eps": 1.0, "batch_size": 24, "epochs": 10,
}
#: keys a ``methods`` row may set (checked at start-up by :func:`pipeline.methods.check_params`)
PARAMS: tuple[str, ...] = (*DEFAULTS, "block_rows")


def cosine_distances(X: np.ndarray) -> np.ndarray:
    """Cosine distances ``1 - cos(x_i, x_j)`` (n, n) in float64; a zero row is at distance 1.

    Example:
        >>> cosine_distances(np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])).round(4)
        array([[0.    , 0.2929, 1.    ],
               [0.2929, 0.    , 0.2929],
               [1.    , 0.2929, 0.    ]])
    """
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1)
    U = X / np.where(norms > 0, norms, 1.0)[:, None]
    D = 1.0 - U @ U.T
    np.fill_diagonal(D, np.where(norms > 0, 0.0, 1.0))
    return np.clip(D, 0.0, 2.0, out=D)


def half_gaussian_fit(distances: np.ndarray, bin_width: float = 0.01
                      ) -> tuple[float, float, float]:
    r"""Fit two half Gaussians to a sample of distances: ``(peak, sigma_left, sigma_right)``.

    The peak :math:`p` is the left edge of the most populated histogram bin (bins of
    ``bin_width`` from 0, as the authors'; the first of equally populated ones); the
    distances :math:`\le p` and their mirror images :math:`2p - d` make a symmetric sample
    whose Gaussian fit has mean :math:`p` and standard deviation
    :math:`\sigma_l = \sqrt{\operatorname{mean}((d - p)^2)}` (maximum likelihood, as
    ``scipy.stats.norm.fit``); likewise :math:`\sigma_r` from the distances :math:`> p`.
    So :math:`m_l = m_r = p`. :func:`fit` passes each pair once (the upper triangle); the
    authors' ``main.py`` passes the full n x n matrix, each pair twice (no change to the fit)
    and the n zero self-distances (a little more weight at 0 in the left half).

    Example (bins [0, 0.1), [0.1, 0.2), ...; the second holds three values):
        >>> p, sl, sr = half_gaussian_fit(np.array([0.0, 0.1, 0.12, 0.15, 0.3, 0.5]), 0.1)
        >>> round(p, 4), round(sl, 4), round(sr, 4)
        (0.1, 0.0707, 0.2252)
    """
    d = np.asarray(distances, dtype=np.float64).ravel()
    if d.size == 0 or not np.isfinite(d).all():
        raise ValueError(f"{METHOD}: distances must be a non-empty finite sample")
    if d.min() < 0:
        raise ValueError(f"{METHOD}: distances must be >= 0, got {d.min()}")
    idx = np.floor(d / bin_width + 1e-9).astype(np.int64)
    peak = bin_width * int(np.argmax(np.bincount(idx)))
    left, right = d[d <= peak], d[d > peak]
    sigma_l = float(np.sqrt(np.mean((left - peak) ** 2))) if left.size else 0.0
    sigma_r = float(np.sqrt(np.mean((right - peak) ** 2))) if right.size else 0.0
    return float(peak), sigma_l, sigma_r


def semantic_similarity(D: np.ndarray, low: float, high: float) -> np.ndarray:
    """SSDH's pseudo-similarity: +1 where ``D < low``, -1 where ``D > high``, else 0.

    ``low`` = :math:`m_l - \\alpha\\sigma_l`, ``high`` = :math:`m_r + \\beta\\sigma_r`.
    Returned as int8 (n, n).

    Example:
        >>> semantic_similarity(np.array([[0.0, 0.5], [0.9, 0.2]]), 0.3, 0.8)
        array([[ 1,  0],
               [-1,  1]], dtype=int8)
    """
    D = np.asarray(D)
    return ((D < low).astype(np.int8) - (D > high).astype(np.int8)).astype(np.int8)


def pairwise_loss(H: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    r"""SSDH's loss on a batch (authors' ``main.py``): :math:`\operatorname{mean}_{ij}\,|S_{ij}|
    (h_i^\top h_j / r - S_{ij})^2` over all ordered pairs (diagonal included, as the authors).

    Example (r = 2; the pair (0, 1) is left out by S = 0):
        >>> pairwise_loss(torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        ...               torch.tensor([[1.0, 0.0], [0.0, -1.0]])).item()
        0.625
    """
    r = H.shape[1]
    return (S.abs() * (H @ H.T / r - S) ** 2).mean()


class _Net(torch.nn.Module):
    def __init__(self, d: int, hidden: list[int], bits: int, dropout: float) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = []
        width = d
        for h in hidden:
            layers += [torch.nn.Linear(width, h), torch.nn.ReLU(), torch.nn.Dropout(dropout)]
            width = h
        self.body = torch.nn.Sequential(*layers)
        self.hash = torch.nn.Linear(width, bits)
        with torch.no_grad():  # the authors' hash layer: truncated normal, std 0.001
            torch.nn.init.trunc_normal_(self.hash.weight, 0.0, 1e-3, -2e-3, 2e-3)
            torch.nn.init.trunc_normal_(self.hash.bias, 0.0, 1e-3, -2e-3, 2e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pre-activation; h = tanh of it
        return self.hash(self.body(x))


def _params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    p = resolve_params(params, DEFAULTS, METHOD)
    p["alpha"] = number(p["alpha"], "alpha", METHOD)
    p["beta"] = number(p["beta"], "beta", METHOD)
    p["bin_width"] = number(p["bin_width"], "bin_width", METHOD, strict=True)
    p["lr"] = number(p["lr"], "lr", METHOD, strict=True)
    p["adam_eps"] = number(p["adam_eps"], "adam_eps", METHOD, strict=True)
    network_shape(p, METHOD)
    p["batch_size"] = positive_int(p["batch_size"], "batch_size", METHOD, low=2)
    p["epochs"] = positive_int(p["epochs"], "epochs", METHOD)
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
    """Build SSDH's similarity from ``X`` and train the hashing network to it; ``Y`` ignored.

    Args:
        X (np.ndarray): training features (n, d).
        Y: auxiliary labels, ignored.
        bits (int): code length r >= 1.
        params (dict): see the module docstring.
        seed (int): seeds the initialisation, dropout and the batch order.

    Returns:
        state dict: ``net`` (torch state_dict), ``hidden``, ``thresholds`` (low, high),
        ``peak``, ``sigmas``, ``similar_fraction`` / ``dissimilar_fraction`` of the pairs,
        ``bits``, ``dim``, ``history`` (loss per epoch).
    """
    p = _params(params)
    seed = check_seed(seed, METHOD)
    X = check_features(X, METHOD)
    n, d = X.shape
    bits = check_bits(bits, METHOD)
    D = cosine_distances(X)
    peak, sigma_l, sigma_r = half_gaussian_fit(D[np.triu_indices(n, k=1)], p["bin_width"])
    low, high = peak - p["alpha"] * sigma_l, peak + p["beta"] * sigma_r
    S = torch.from_numpy(semantic_similarity(D, low, high)).float()
    del D
    off = ~torch.eye(n, dtype=torch.bool)
    sim, dis = float((S[off] > 0).float().mean()), float((S[off] < 0).float().mean())
    log.info("%s: peak %.4f, sigma_l %.4f, sigma_r %.4f: %.2f%% of pairs similar, %.2f%% "
             "dissimilar", METHOD, peak, sigma_l, sigma_r, 100 * sim, 100 * dis)
    Xt = as_tensor(X)
    history = []
    with seeded(seed):
        net = _Net(d, p["hidden"], bits, p["dropout"])
        opt = torch.optim.Adam(net.parameters(), lr=p["lr"], eps=p["adam_eps"])
        net.train()
        for epoch in range(1, p["epochs"] + 1):
            total, steps = 0.0, 0
            for idx in epoch_batches(n, p["batch_size"]):
                loss = pairwise_loss(torch.tanh(net(Xt[idx])), S[idx][:, idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, steps = total + loss.item(), steps + 1
            history.append({"epoch": epoch, "loss": total / steps})
            log.info("%s: epoch %d/%d loss %.5f", METHOD, epoch, p["epochs"], total / steps)
    return {
        "method": METHOD, "bits": bits, "dim": d, "hidden": p["hidden"],
        "dropout": p["dropout"],
        "net": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "thresholds": (low, high), "peak": peak, "sigmas": (sigma_l, sigma_r),
        "similar_fraction": sim, "dissimilar_fraction": dis, "history": history,
    }


def encode(
    state: Mapping[str, Any],
    X: np.ndarray,
    Y: np.ndarray | None = None,
    params: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Codes ``sgn(tanh(net(x)))`` as bool (N, bits), True = +1 (eval mode, no dropout)."""
    keys = ("hidden", "net")
    net = None
    if isinstance(state, Mapping) and "hidden" in state and "net" in state:
        with seeded(0):  # its random initialisation is overwritten; keep torch's generator
            net = _Net(int(state["dim"]), list(state["hidden"]), int(state["bits"]),
                       float(state["dropout"]))
        net.load_state_dict(state["net"])
        net.eval()
    return encode_torch(state, X, params, DEFAULTS, METHOD, keys, lambda x: net(x))
