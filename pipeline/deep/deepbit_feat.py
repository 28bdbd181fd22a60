r"""DeepBit on features (no rotation term): a feature-level variant of DeepBit, labelled as such.

Lin, Lu, Chen & Zhou, "Learning Compact Binary Descriptors with Unsupervised Deep Neural
Networks", CVPR 2016. DeepBit fine-tunes VGG16 on the images; this variant trains only a hash
layer on the pipeline's (fixed) CNN features, so its rows are ``deepbit_feat``, shown as
"DeepBit (features, no rotation term)", never as DeepBit.

Sources checked (2026-12-03): the authors' Caffe code, github.com/kevinlin311tw/cvpr16-deepbit
(``examples/deepbit-cifar10-32/{train.sh, solver_stage1.prototxt, vgg_train32_stage1.prototxt,
vgg_train32_stage2.prototxt}``, ``src/caffe/layers/K1_even_dist_loss_layer.cpp``,
``K2_min_quantize_loss_layer.cpp``). The paper's text was not read: nothing below is checked
against the paper, and none of its equation numbers is cited.

What the authors' code does. Training runs in stages (``train.sh``): stage 1 ("minimal
quantization loss + balance binary codes") trains only the new layer ``fc8_kevin`` (every VGG16
layer has ``lr_mult: 0``) on top of fc7 (ReLU, dropout 0.5), 50,000 SGD iterations of batches
of 32; stage 2 adds the rotation-invariance loss (``TransformLoss``) on rotated copies of the
images and fine-tunes. Both losses' forward passes, with :math:`h \in \mathbb{R}^{m\times L}` the
layer's outputs on a batch of :math:`m` images and :math:`b = [h > 0.5]`:

.. math::
    \text{quantization} = \tfrac{1}{2m}\textstyle\sum_{n,k} (b_{nk} - h_{nk})^2, \qquad
    \text{even distribution} = \tfrac{1}{2m}\textstyle\sum_k
        \bigl(\tfrac1m\sum_n b_{nk} - \tfrac12\bigr)^2

(:func:`quantization_loss`, :func:`even_distribution_loss`), each with ``loss_weight`` 1.

Differences from the authors' code (this is why the variant has its own name):

* **No rotation-invariance term**: it compares an image's code with its rotated copies' codes
  and needs the images; only stage 1 is reproduced.
* **Sigmoid** outputs: the authors' prototxt applies a ReLU to ``fc8_kevin`` and thresholds at
  0.5; here a sigmoid bounds :math:`h` to (0, 1) so that the 0.5 threshold and the quantization
  loss are well posed. Codes: :math:`b = [\sigma(Wx + c) > 0.5]`, i.e. the pre-activation > 0.
* **Gradients by autograd**: the authors' backward passes write one scalar into every entry of
  the gradient instead of the losses' derivatives; here the quantization loss is
  differentiated with :math:`b` held fixed, and the even-distribution loss, whose hard
  :math:`b` has no gradient, is trained in its relaxed form with :math:`h` in place of
  :math:`b` (``relaxed=True``); the logged history has both losses' exact forward values.
* The input is the pipeline's features (standing for fc7) **centred** by the training mean
  (stored in the state), with dropout 0.5 on them as the authors' ``drop7``; optional
  ``hidden`` ReLU layers (default none: the authors' single layer). Without the centring,
  non-negative features (as fc7 after its ReLU) drove every bit to one value for all images
  within 2,000 steps in a trial on 1,000 x 1,280 |N(0, 1)| features (the even-distribution
  loss, divided by the batch size, is too weak to hold the bits balanced); centred, the initial
  codes are balanced random projections that training sharpens.

Settings (all optional) and their sources (the authors' stage-1 solver and prototxt):
    hidden (list[int]): widths of ReLU layers below the hash layer (default: ``[]``).
    dropout (float): dropout on the input features (and hidden layers) in training (``0.5``).
    lr (float): SGD learning rate (``0.001``; biases get twice it, as ``lr_mult: 2``).
    momentum (float): ``0.9``. weight_decay (float): ``0.0005`` on weights, none on biases.
    batch_size (int): ``32``.
    iterations (int): SGD steps (``50000``; the demo row shrinks it in ``config.yaml``).
    lr_step (int): the learning rate is multiplied by ``gamma`` every ``lr_step`` steps
        (``25000``, ``0.1``: the authors' "step" policy).
    quantization_weight, balance_weight (float): the losses' weights (``1``, ``1``).
    block_rows (int): rows per block when encoding.

Shapes:
    fit: X (m, d) -> state; encode: X (N, d) -> bool (N, L).
"""

from __future__ import annotations

import logging
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

__all__ = ["DEFAULTS", "encode", "even_distribution_loss", "fit", "quantization_loss"]

log = logging.getLogger("pipeline.deep.deepbit_feat")

METHOD = "deepbit_feat"
#: default parameters (the authors' stage-1 settings; module docstring)
DEFAULTS: dict[str, Any] = {
    "hidden": [], "dropout": 0.5, "lr": 1e-3, "momentum": 0.9, "weight_decay": 5e-4,
    "batch_size": 32, "iterations": 50000, "lr_step": 25000, "gamma": 0.1,
    "quantization_weight": 1.0, "balance_weight": 1.0,
}
#: keys a ``methods`` row may set (checked at start-up by :func:`pipeline.methods.check_params`)
PARAMS: tuple[str, ...] = (*DEFAULTS, "block_rows")


def quantization_loss(h: torch.Tensor) -> torch.Tensor:
    r"""DeepBit's quantization loss (authors' ``K2_min_quantize_loss_layer.cpp`` forward):
    :math:`\frac{1}{2m}\sum_{n,k}(b_{nk} - h_{nk})^2` with :math:`b = [h > 0.5]` held fixed.

    Example (m = 2): (0.2^2 + 0.1^2 + 0.4^2 + 0.5^2) / 4
        >>> round(quantization_loss(torch.tensor([[0.8, 0.1], [0.4, 0.5]])).item(), 4)
        0.115
    """
    b = (h > 0.5).to(h.dtype).detach()
    return ((b - h) ** 2).sum() / (2 * h.shape[0])


def even_distribution_loss(h: torch.Tensor, relaxed: bool = False) -> torch.Tensor:
    r"""DeepBit's even-distribution (bit balance) loss (authors' ``K1_even_dist_loss_layer.cpp``
    forward): :math:`\frac{1}{2m}\sum_k(\bar b_k - \frac12)^2`, :math:`\bar b_k` the fraction of
    the batch's :math:`m` codes with bit k on (:math:`b = [h > 0.5]`). With ``relaxed`` the mean
    of :math:`h` replaces :math:`\bar b` (differentiable; used for training).

    Example (m = 2): bits on 1/2 and 0/2 -> (0^2 + 0.5^2) / 4; relaxed: means .6, .3
        >>> h = torch.tensor([[0.8, 0.1], [0.4, 0.5]])
        >>> even_distribution_loss(h).item(), round(even_distribution_loss(h, True).item(), 4)
        (0.0625, 0.0125)
    """
    on = h if relaxed else (h > 0.5).to(h.dtype)
    return ((on.mean(dim=0) - 0.5) ** 2).sum() / (2 * h.shape[0])


def _params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    p = resolve_params(params, DEFAULTS, METHOD)
    for key in ("lr", "gamma"):
        p[key] = number(p[key], key, METHOD, strict=True)
    for key in ("momentum", "weight_decay", "quantization_weight", "balance_weight"):
        p[key] = number(p[key], key, METHOD)
    network_shape(p, METHOD)
    p["batch_size"] = positive_int(p["batch_size"], "batch_size", METHOD, low=2)
    p["iterations"] = positive_int(p["iterations"], "iterations", METHOD)
    p["lr_step"] = positive_int(p["lr_step"], "lr_step", METHOD)
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
    """Train the hash layer on ``X`` with DeepBit's quantization and even-distribution losses.

    Args:
        X (np.ndarray): training features (m, d); Y: auxiliary labels, ignored.
        bits (int): code length L >= 1.
        params (dict): see the module docstring.
        seed (int): seeds the initialisation, dropout and the batch order.

    Returns:
        state dict: ``net`` (torch state_dict), ``mean`` (d,), ``hidden``, ``dropout``,
        ``bits``, ``dim``,
        ``history`` (per pass over the data: mean exact quantization and even-distribution
        losses of its batches).
    """
    p = _params(params)
    seed = check_seed(seed, METHOD)
    X = check_features(X, METHOD)
    n, d = X.shape
    bits = check_bits(bits, METHOD)
    mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    Xt = as_tensor(X - mean)
    history: list[dict[str, float]] = []
    with seeded(seed):
        net = HashLayerNet(d, p["hidden"], bits, p["dropout"])
        opt, sched = caffe_sgd(net, p)
        net.train()
        step, epoch = 0, 0
        while step < p["iterations"]:
            epoch += 1
            quant = even = 0.0
            batches = 0
            for idx in epoch_batches(n, p["batch_size"]):
                h = torch.sigmoid(net(Xt[idx]))
                loss = (p["quantization_weight"] * quantization_loss(h)
                        + p["balance_weight"] * even_distribution_loss(h, relaxed=True))
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                with torch.no_grad():
                    quant += quantization_loss(h).item()
                    even += even_distribution_loss(h).item()
                batches += 1
                step += 1
                if step >= p["iterations"]:
                    break
            history.append({"epoch": epoch, "steps": step, "quantization": quant / batches,
                            "even_distribution": even / batches})
            log.info("%s: pass %d, step %d/%d: quantization %.5f, even distribution %.5f",
                     METHOD, epoch, step, p["iterations"], quant / batches, even / batches)
    return {
        "method": METHOD, "bits": bits, "dim": d, "hidden": p["hidden"],
        "dropout": p["dropout"], "mean": mean,
        "net": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "history": history,
    }


def encode(
    state: Mapping[str, Any],
    X: np.ndarray,
    Y: np.ndarray | None = None,
    params: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Codes ``sigmoid(net(x - mean)) > 0.5`` as bool (N, bits), in row blocks (eval mode)."""
    keys = ("hidden", "net", "mean")
    net = load_hash_layer_net(state, keys)
    mean = None
    if net is not None:
        mean = torch.from_numpy(np.asarray(state["mean"], dtype=np.float32))
    return encode_torch(state, X, params, DEFAULTS, METHOD, keys, lambda x: net(x - mean))
