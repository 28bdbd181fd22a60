r"""SADH on features: a feature-level variant of SADH, labelled as such.

Shen, Xu, Liu, Yang, Huang & Shen, "Unsupervised Deep Hashing with Similarity-Adaptive and
Discrete Optimization", TPAMI 2018. SADH alternates three modules: deep hash model training,
similarity graph updating, binary code optimization. This variant trains the hash layer on the
pipeline's (fixed) CNN features, so its rows are ``sadh_feat``, shown as "SADH (on features)",
never as SADH.

Sources checked (2026-12-03): the authors' code,
github.com/xuyan1115/Similarity-Adaptive-Deep-Hashing (``train.sh``, ``ADMM/ADMM.m`` and its
copies ``ADMM_1.m``/``ADMM_2.m``, ``utils/gradientB.m``, ``finetune_network/vgg_train16*.prototxt``,
``solver_16bits*.prototxt``, ``caffemodels/vgg_feature16.prototxt``, ``run_cifar10_16bits.m``).
Of the paper only the abstract could be read: nothing below is checked against the paper, and
none of its equation numbers is cited.

What the authors' code does (``train.sh``: three rounds for 16-bit CIFAR-10):

1. **Similarity graph** (``ADMM.m``): fc7 features of the training images from the current
   model, centred by their mean; :math:`m` = 500 anchors by k-means (``litekmeans``, 30
   iterations); each image linked to its :math:`s` = 2 nearest anchors with weights
   :math:`\exp(-\lVert x_i - a_j\rVert^2/\sigma^2)` normalised to sum 1 per image, where
   :math:`\sigma` is the mean distance to the :math:`s`-th nearest anchor
   (:func:`anchor_graph`); the graph is :math:`A = Z\Lambda^{-1}Z^\top`,
   :math:`\Lambda = \operatorname{diag}(Z^\top\mathbf 1)` (:func:`graph_product`).
2. **Binary codes** (``ADMM.m``, ``gradientB.m``): :math:`\min_B \operatorname{tr}(B^\top B) -
   \operatorname{tr}(B^\top AB)` over :math:`B \in \{-1,1\}^{n\times r}`, the binary set written
   as the intersection of the box :math:`[-1,1]^{n\times r}` and the sphere
   :math:`\lVert B\rVert_F^2 = nr` with copies :math:`Z_1, Z_2` and multipliers
   :math:`Y_1, Y_2`, and the balance and decorrelation constraints as penalties. Each of at
   most 50 ADMM iterations: B by L-BFGS (``minFunc``, 20 function evaluations, from the
   previous B) on

   .. math::
       f(B) = \tfrac{\rho_1+\rho_2+2}{2}\lVert B\rVert_F^2 - \operatorname{tr}(B^\top AB)
            + \operatorname{tr}(C^\top B) + \tfrac{\rho_3}{2}\lVert\mathbf 1^\top B\rVert^2
            + \tfrac{\rho_4}{4}\lVert B^\top B - nI\rVert_F^2,\quad
       C = Y_1 + Y_2 - \rho_1 Z_1 - \rho_2 Z_2

   (:func:`b_objective`); :math:`Z_1` = the box projection of :math:`B + Y_1/\rho_1`,
   :math:`Z_2` = the sphere projection of :math:`B + Y_2/\rho_2` (:func:`box_projection`,
   :func:`sphere_projection`); :math:`Y_k \mathrel{+}= \gamma\rho_k(B - Z_k)`; stop when the
   augmented Lagrangian (:func:`admm_loss`) changes by at most 1e-4 relatively. Start:
   :math:`B = \operatorname{sgn}` of a standard normal draw, :math:`Y_1, Y_2 \sim U(0,1)`;
   result :math:`\operatorname{sgn}(B)`. :math:`\rho_1 = \rho_2 = 10^{-2}`,
   :math:`\rho_3 = \rho_4 = 10^{-3}`, :math:`\gamma = 10^{-3}`.
3. **Hash model** (``vgg_train16.prototxt``, ``solver_16bits.prototxt``): VGG16 with **every
   layer frozen** (``lr_mult: 0``) and a new layer ``fc8`` on fc7 (ReLU, dropout 0.5), tanh,
   Caffe's Euclidean loss :math:`\frac1{2N}\sum_i\lVert\tanh(f(x_i)) - b_i\rVert^2`
   (:func:`euclidean_loss`) against the codes; SGD lr 0.001 (biases twice), momentum 0.9,
   weight decay 5e-4, batches of 20, 70,800 steps, rate times 0.1 after 35,400; each round
   starts from the previous round's weights with a new solver.

Codes (``vgg_feature16.prototxt``, ``run_cifar10_16bits.m``): fc8's output (no tanh) thresholded
at one number, the mean of all training images' fc8 outputs: :math:`b = [f(x) > \theta]`.

Because fc7 is frozen, the graph of rounds 2 and 3 in the authors' code is built from the same
fc7 features as round 1 (only the k-means anchors change), and each round's ADMM restarts from
a random B. This variant does the same on the pipeline's features (they stand for fc7): per
round a graph from the features with new k-means anchors, ADMM from a new random start, and
training continued from the previous weights. Differences from the authors' code (why the
variant has its own name):

* **Features, not images**: no image augmentation (the authors flip the training images and
  crop 224 of 256 at random) and the pipeline's backbone instead of VGG16's fc7.
* **L-BFGS**: torch's L-BFGS with a strong-Wolfe line search (history 100, 20 evaluations per
  B-step) stands for minFunc's; float64 as MATLAB.
* **k-means** as ``litekmeans`` (not in the authors' repository; Deng Cai's): starts from
  distinct random training rows, 30 Lloyd iterations, empty clusters dropped; anchors that no
  image links to have no column in :math:`Z` (MATLAB would divide by zero).
* ``sgn`` ties (exact zeros) go to -1, and a B entry of the start never is zero.
* **rho3, rho4 scaled to the number of training images** (:func:`penalty_scale`): the authors
  set them for n = 118,000 (their solver snapshots every 5,900 batches of 20: one pass over
  59,000 CIFAR-10 images and their mirror images). The balance and decorrelation penalties
  grow with n^2, the graph term and the pull of the multipliers (started at U(0,1), moved by
  only gamma*rho = 1e-5 per iteration, so they stay a positive linear term) with n; at n = 1,000
  the unscaled values left 26-35% of the demo's training codes at +1 at 16 and 64 bits, scaled
  46-54% per bit (a check of the training codes' balance, not of any retrieval result).
  ``penalty_n: null`` gives the values as written.

Settings (all optional) and their sources (the authors' code above):
    rounds (int): alternations of graph, codes and hash layer (``3``, ``train.sh``).
    anchors (int): k-means anchors (``500``; at most the number of training images).
    nearest (int): anchors per image, :math:`s` (``2``). kmeans_iters (int): ``30``.
    rho1, rho2, rho3, rho4 (float): ``1e-2``, ``1e-2``, ``1e-3``, ``1e-3``.
    dual_rate (float): :math:`\gamma`, the multipliers' step (``1e-3``).
    admm_iters (int): ``50``. admm_tol (float): relative change that stops ADMM (``1e-4``).
    lbfgs_evals (int): function evaluations per B-step (``20``, ``MaxFunEvals``).
    penalty_n (int | None): rho3 and rho4 are multiplied by ``penalty_n / n`` at n training
        images (``118000``, the authors' n; ``None``: the values as given). See below.
    hidden (list[int]): widths of ReLU layers below the hash layer (default ``[]``: the
        authors' single layer). dropout (float): on the input features (``0.5``, ``drop7``).
    lr (float): ``0.001``. momentum (float): ``0.9``. weight_decay (float): ``0.0005``.
    batch_size (int): ``20``. iterations (int): SGD steps per round (``70800``; the demo row
        shrinks it in ``config.yaml``). lr_step (int), gamma (float): ``35400``, ``0.1``.
    block_rows (int): rows per block when encoding.

Shapes:
    fit: X (n, d) -> state; encode: X (N, d) -> bool (N, r).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from pipeline.baselines import check_bits, check_features, check_seed, resolve_params
from pipeline.deep import (
    HashLayerNet,
    as_tensor,
    caffe_sgd,
    encode_torch,
    epoch_batches,
    load_hash_layer_net,
    network_shape,
    number,
    positive_int,
    seeded,
)

__all__ = ["DEFAULTS", "admm_loss", "anchor_graph", "b_objective", "binary_codes",
           "box_projection", "encode", "euclidean_loss", "fit", "graph_product", "kmeans",
           "penalty_scale", "sphere_projection"]

log = logging.getLogger("pipeline.deep.sadh_feat")

METHOD = "sadh_feat"
#: default parameters (the authors' code; module docstring)
DEFAULTS: dict[str, Any] = {
    "rounds": 3, "anchors": 500, "nearest": 2, "kmeans_iters": 30,
    "rho1": 1e-2, "rho2": 1e-2, "rho3": 1e-3, "rho4": 1e-3, "dual_rate": 1e-3,
    "penalty_n": 118000, "admm_iters": 50, "admm_tol": 1e-4, "lbfgs_evals": 20,
    "hidden": [], "dropout": 0.5, "lr": 1e-3, "momentum": 0.9, "weight_decay": 5e-4,
    "batch_size": 20, "iterations": 70800, "lr_step": 35400, "gamma": 0.1,
}
#: keys a ``methods`` row may set (checked at start-up by :func:`pipeline.methods.check_params`)
PARAMS: tuple[str, ...] = (*DEFAULTS, "block_rows")


def kmeans(X: torch.Tensor, k: int, iters: int) -> torch.Tensor:
    """Lloyd's k-means as ``litekmeans``: ``k`` distinct random rows of ``X`` (torch's
    generator) as the start, ``iters`` assignment/update passes; clusters left empty are dropped.

    Example (two obvious groups; any start ends at their means):
        >>> X = torch.tensor([[0.0], [1.0], [10.0], [11.0]], dtype=torch.float64)
        >>> _ = torch.manual_seed(0); sorted(kmeans(X, 2, 5).flatten().tolist())
        [0.5, 10.5]
    """
    centres = X[torch.randperm(X.shape[0])[:k]].clone()
    for _ in range(iters):
        label = torch.cdist(X, centres).argmin(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, label, X)
        counts = torch.bincount(label, minlength=centres.shape[0])
        keep = counts > 0
        centres = sums[keep] / counts[keep, None].to(X.dtype)
    return centres


def anchor_graph(X: torch.Tensor, anchors: torch.Tensor, nearest: int) -> torch.Tensor:
    r"""The authors' anchor graph (``ADMM.m``): :math:`Z \in \mathbb{R}^{n\times m}` with
    :math:`Z_{ij} \propto \exp(-\lVert x_i - a_j\rVert^2/\sigma^2)` on the ``nearest`` anchors
    of :math:`x_i` (0 elsewhere), rows summing to 1, :math:`\sigma` the mean distance from the
    images to their ``nearest``-th anchor.

    Example (anchors 0 and 3 on a line; s = 1: one weight 1 per row; s = 2: squared distances
    1 and 4 per row, sigma = the mean distance to the 2nd anchor = 2):
        >>> X = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
        >>> a = torch.tensor([[0.0], [3.0]], dtype=torch.float64)
        >>> anchor_graph(X, a, 1).tolist()
        [[1.0, 0.0], [0.0, 1.0]]
        >>> w = math.exp(-1 / 4) / (math.exp(-1 / 4) + math.exp(-4 / 4))
        >>> torch.allclose(anchor_graph(X, a, 2), torch.tensor([[w, 1 - w], [1 - w, w]],
        ...                dtype=torch.float64))
        True
    """
    d2 = torch.cdist(X, anchors).pow(2)
    val, pos = torch.topk(d2, nearest, dim=1, largest=False)  # ascending distances
    sigma = val[:, -1].sqrt().mean()
    w = torch.exp(-val / sigma**2)
    w = w / w.sum(dim=1, keepdim=True)
    return torch.zeros_like(d2).scatter_(1, pos, w)


def graph_product(Z: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    r""":math:`AB` with :math:`A = Z\Lambda^{-1}Z^\top`, :math:`\Lambda = \operatorname{diag}
    (Z^\top\mathbf 1)`, without forming the n x n matrix; anchors no row links to add nothing.

    Example (one image on each of two anchors, a third shared: A's rows average over anchors):
        >>> Z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=torch.float64)
        >>> graph_product(Z, torch.tensor([[3.0], [0.0], [0.0]], dtype=torch.float64)).tolist()
        [[2.0], [0.0], [1.0]]
    """
    mass = Z.sum(dim=0)
    inv = torch.where(mass > 0, 1.0 / mass.clamp_min(torch.finfo(Z.dtype).tiny), 0.0)
    return Z @ (inv[:, None] * (Z.T @ B))


def b_objective(B: torch.Tensor, C: torch.Tensor, Z: torch.Tensor,
                rho: tuple[float, float, float, float]) -> torch.Tensor:
    r"""The B-step's objective (the authors' ``gradientB.m``):
    :math:`\frac{\rho_1+\rho_2+2}{2}\lVert B\rVert^2 - \operatorname{tr}(B^\top AB) +
    \operatorname{tr}(C^\top B) + \frac{\rho_3}{2}\lVert\mathbf 1^\top B\rVert^2 +
    \frac{\rho_4}{4}\lVert B^\top B - nI\rVert^2` (its gradient by autograd equals theirs,
    :math:`2(B - AB) + C + (\rho_1+\rho_2)B + \rho_3\mathbf 1\mathbf 1^\top B +
    \rho_4 B(B^\top B - nI)`).

    Example (n = 2, r = 1, A = the average, B = (1, -1), C = 0, all rho 1): 4/2*2 - 0 + 0 + 0 + 0
        >>> Z = torch.ones(2, 1, dtype=torch.float64)
        >>> b_objective(torch.tensor([[1.0], [-1.0]], dtype=torch.float64),
        ...             torch.zeros(2, 1, dtype=torch.float64), Z, (1, 1, 1, 1)).item()
        4.0
    """
    rho1, rho2, rho3, rho4 = rho
    n, r = B.shape
    gram = B.T @ B - n * torch.eye(r, dtype=B.dtype)
    return ((rho1 + rho2 + 2) / 2 * (B * B).sum() - (B * graph_product(Z, B)).sum()
            + (C * B).sum() + rho3 / 2 * B.sum(dim=0).pow(2).sum()
            + rho4 / 4 * gram.pow(2).sum())


def box_projection(T: torch.Tensor) -> torch.Tensor:
    """Projection onto the box [-1, 1] (the Z1-update).

        >>> box_projection(torch.tensor([-2.0, 0.5, 3.0])).tolist()
        [-1.0, 0.5, 1.0]
    """
    return T.clamp(-1.0, 1.0)


def sphere_projection(T: torch.Tensor) -> torch.Tensor:
    """Projection onto the sphere of squared Frobenius norm n*r (the Z2-update).

        >>> T = torch.tensor([[3.0, 0.0], [0.0, 4.0]], dtype=torch.float64)  # norm 5 -> 2
        >>> sphere_projection(T).tolist()
        [[1.2, 0.0], [0.0, 1.6]]
    """
    return math.sqrt(T.numel()) * T / torch.linalg.norm(T)


def admm_loss(B: torch.Tensor, Z: torch.Tensor, Z1: torch.Tensor, Z2: torch.Tensor,
              Y1: torch.Tensor, Y2: torch.Tensor,
              rho: tuple[float, float, float, float]) -> float:
    r"""The augmented Lagrangian that ``ADMM.m`` logs and stops on:
    :math:`\operatorname{tr}(B^\top B - B^\top AB) + \sum_k [\operatorname{tr}(Y_k^\top(B -
    Z_k)) + \frac{\rho_k}{2}\lVert B - Z_k\rVert^2] + \frac{\rho_3}{2}\lVert\mathbf 1^\top
    B\rVert^2 + \frac{\rho_4}{4}\lVert B^\top B - nI\rVert^2`.

    Example (B = Z1 = Z2 = (1, -1), A = the average, Y = 0): 2 - 0 + 0 + 0 + 0 + 0
        >>> B = torch.tensor([[1.0], [-1.0]], dtype=torch.float64); O = torch.zeros_like(B)
        >>> admm_loss(B, torch.ones(2, 1, dtype=torch.float64), B, B, O, O, (1, 1, 1, 1))
        2.0
    """
    rho1, rho2, rho3, rho4 = rho
    n, r = B.shape
    res1, res2 = B - Z1, B - Z2
    gram = B.T @ B - n * torch.eye(r, dtype=B.dtype)
    return float((B * B).sum() - (B * graph_product(Z, B)).sum()
                 + (Y1 * res1).sum() + (Y2 * res2).sum()
                 + rho1 / 2 * res1.pow(2).sum() + rho2 / 2 * res2.pow(2).sum()
                 + rho3 / 2 * B.sum(dim=0).pow(2).sum() + rho4 / 4 * gram.pow(2).sum())


def _closure(opt: torch.optim.Optimizer, Bv: torch.Tensor, C: torch.Tensor, Z: torch.Tensor,
             rho: tuple[float, float, float, float]) -> Any:
    def closure() -> torch.Tensor:
        opt.zero_grad()
        f = b_objective(Bv, C, Z, rho)
        f.backward()
        return f
    return closure


def binary_codes(Z: torch.Tensor, bits: int, p: Mapping[str, Any]) -> tuple[torch.Tensor,
                                                                           list[float]]:
    """The authors' ADMM (``ADMM.m``) on the graph ``Z``: codes in {-1, 1} (n, bits) and the
    logged loss per iteration. Random start from torch's generator. ``p`` holds the rho as
    used (after :func:`penalty_scale`)."""
    rho = (p["rho1"], p["rho2"], p["rho3"], p["rho4"])
    n = Z.shape[0]
    B = torch.randn(n, bits, dtype=torch.float64).sign()
    B[B == 0] = -1.0
    Z1, Z2 = B.clone(), B.clone()
    Y1 = torch.rand(n, bits, dtype=torch.float64)
    Y2 = torch.rand(n, bits, dtype=torch.float64)
    losses: list[float] = []
    old = 0.0
    for _ in range(p["admm_iters"]):
        C = Y1 + Y2 - p["rho1"] * Z1 - p["rho2"] * Z2
        Bv = B.clone().requires_grad_(True)
        opt = torch.optim.LBFGS([Bv], lr=1.0, max_iter=p["lbfgs_evals"],
                                max_eval=p["lbfgs_evals"], history_size=100,
                                tolerance_grad=1e-5, tolerance_change=1e-9,
                                line_search_fn="strong_wolfe")

        opt.step(_closure(opt, Bv, C, Z, rho))
        B = Bv.detach()
        Z1 = box_projection(B + Y1 / p["rho1"])
        Z2 = sphere_projection(B + Y2 / p["rho2"])
        Y1 = Y1 + p["dual_rate"] * p["rho1"] * (B - Z1)
        Y2 = Y2 + p["dual_rate"] * p["rho2"] * (B - Z2)
        loss = admm_loss(B, Z, Z1, Z2, Y1, Y2, rho)
        losses.append(loss)
        if old != 0.0 and abs((loss - old) / old) <= p["admm_tol"]:
            break
        old = loss
    return torch.where(B > 0, 1.0, -1.0), losses


def penalty_scale(n: int, penalty_n: int | None) -> float:
    """The factor on rho3 and rho4 at ``n`` training images: ``penalty_n / n`` (1 without
    ``penalty_n``). The balance and decorrelation penalties grow with n^2 and the rest of the
    B-step's objective with n, so the authors' values, set for their n = 118,000 (59,000
    CIFAR-10 images and their mirror images), hold the same weight per image at any n.

        >>> penalty_scale(1000, 118000), penalty_scale(1000, None)
        (118.0, 1.0)
    """
    return 1.0 if penalty_n is None else penalty_n / n


def euclidean_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Caffe's EuclideanLoss: the squared distances summed, divided by twice the batch size.

        >>> euclidean_loss(torch.tensor([[0.5, -1.0], [1.0, 1.0]]),
        ...                torch.tensor([[1.0, -1.0], [-1.0, 1.0]])).item()  # (0.25 + 4) / 4
        1.0625
    """
    return (out - target).pow(2).sum() / (2 * out.shape[0])


def _params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    p = resolve_params(params, DEFAULTS, METHOD)
    for key in ("lr", "gamma", "rho1", "rho2", "dual_rate", "admm_tol"):
        p[key] = number(p[key], key, METHOD, strict=True)
    for key in ("momentum", "weight_decay", "rho3", "rho4"):
        p[key] = number(p[key], key, METHOD)
    network_shape(p, METHOD)
    for key in ("rounds", "anchors", "nearest", "kmeans_iters", "admm_iters", "lbfgs_evals",
                "iterations", "lr_step"):
        p[key] = positive_int(p[key], key, METHOD)
    p["batch_size"] = positive_int(p["batch_size"], "batch_size", METHOD, low=2)
    if p["penalty_n"] is not None:
        p["penalty_n"] = positive_int(p["penalty_n"], "penalty_n", METHOD)
    if p["nearest"] > p["anchors"]:
        raise ValueError(f"{METHOD}: nearest ({p['nearest']}) must be <= anchors "
                         f"({p['anchors']})")
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
    """Alternate the authors' three modules ``rounds`` times on ``X`` (module docstring).

    Args:
        X (np.ndarray): training features (n, d); Y: auxiliary labels, ignored.
        bits (int): code length r >= 1.
        params (dict): see the module docstring.
        seed (int): seeds the anchors, the ADMM starts, the initialisation, dropout and the
            batch order.

    Returns:
        state dict: ``net`` (torch state_dict), ``threshold``, ``hidden``, ``dropout``,
        ``bits``, ``dim``, ``history`` (per round: anchors used, ADMM iterations and last loss,
        fraction of +1 in the codes, mean Euclidean loss of the round's first and last pass).
    """
    p = _params(params)
    seed = check_seed(seed, METHOD)
    X = check_features(X, METHOD)
    n, d = X.shape
    bits = check_bits(bits, METHOD)
    if p["anchors"] > n:
        raise ValueError(f"{METHOD}: anchors ({p['anchors']}) must be <= the number of training "
                         f"images ({n}); set methods.<row>.anchors lower")
    Xt = as_tensor(X)
    centred = torch.from_numpy(X - X.mean(axis=0, dtype=np.float64)).double()
    scale = penalty_scale(n, p["penalty_n"])
    admm = {**p, "rho3": p["rho3"] * scale, "rho4": p["rho4"] * scale}
    history: list[dict[str, float]] = []
    with seeded(seed):
        net = HashLayerNet(d, p["hidden"], bits, p["dropout"])
        for rnd in range(1, p["rounds"] + 1):
            anchors = kmeans(centred, p["anchors"], p["kmeans_iters"])
            Z = anchor_graph(centred, anchors, min(p["nearest"], anchors.shape[0]))
            B, losses = binary_codes(Z, bits, admm)
            target = B.float()
            opt, sched = caffe_sgd(net, p)  # a new solver per round, as train.sh
            net.train()
            step, passes = 0, []
            while step < p["iterations"]:
                total, batches = 0.0, 0
                for idx in epoch_batches(n, p["batch_size"]):
                    loss = euclidean_loss(torch.tanh(net(Xt[idx])), target[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                    total += loss.item()
                    batches += 1
                    step += 1
                    if step >= p["iterations"]:
                        break
                passes.append(total / batches)
            history.append({"round": rnd, "anchors": int(anchors.shape[0]),
                            "admm_iterations": len(losses), "admm_loss": losses[-1],
                            "positive": float((B > 0).double().mean()),
                            "first_pass": passes[0], "last_pass": passes[-1]})
            log.info("%s: round %d/%d: %d anchors, ADMM %d iterations (loss %.4g), "
                     "Euclidean loss %.4f -> %.4f", METHOD, rnd, p["rounds"], anchors.shape[0],
                     len(losses), losses[-1], passes[0], passes[-1])
        net.eval()
        with torch.no_grad():
            threshold = float(torch.cat([net(Xt[i:i + 4096]).double().flatten()
                                         for i in range(0, n, 4096)]).mean())
    return {
        "method": METHOD, "bits": bits, "dim": d, "hidden": p["hidden"],
        "dropout": p["dropout"], "threshold": threshold,
        "rho3": admm["rho3"], "rho4": admm["rho4"],
        "net": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "history": history,
    }


def encode(
    state: Mapping[str, Any],
    X: np.ndarray,
    Y: np.ndarray | None = None,
    params: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Codes ``net(x) > threshold`` as bool (N, bits), in row blocks (eval mode)."""
    keys = ("hidden", "net", "threshold")
    net = load_hash_layer_net(state, keys)
    threshold = float(state["threshold"]) if net is not None else 0.0
    return encode_torch(state, X, params, DEFAULTS, METHOD, keys, lambda x: net(x) - threshold)
