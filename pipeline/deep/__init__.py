r"""Unsupervised *deep* hashing baselines of the LAGNH paper's Table 3, trained on the features.

The paper compares LAGNH with five unsupervised deep hashing methods (Table 3) and their training
and encoding times (Table 4). Here each is a method of the registry contract
(:mod:`pipeline.methods`): ``fit(X, Y, bits, params, seed)`` learns on the pipeline's CNN
features of the training images (the auxiliary labels ``Y`` are ignored), ``encode`` returns
bool codes. They run on the CPU in plain torch.

* ``uhbdnn``: UH-BDNN, Do, Doan & Cheung, "Learning to Hash with Binary Deep Neural Network",
  ECCV 2016 (:mod:`pipeline.deep.uhbdnn`);
* ``ssdh``: SSDH, Yang et al., "Semantic Structure-based Unsupervised Deep Hashing", IJCAI 2018
  (:mod:`pipeline.deep.ssdh`);
* ``tbh``: TBH, Shen et al., "Auto-Encoding Twin-Bottleneck Hashing", CVPR 2020
  (:mod:`pipeline.deep.tbh`);
* feature-level variants of the two that train on the images, labelled as such: ``deepbit_feat``
  (DeepBit, CVPR 2016, no rotation term; :mod:`pipeline.deep.deepbit_feat`) and ``sadh_feat``
  (SADH, TPAMI 2018; :mod:`pipeline.deep.sadh_feat`).

UH-BDNN and TBH learn from features in their authors' code too (UH-BDNN: 320-d GIST of CIFAR-10
and MNIST pixels; TBH: 4096-d VGG16 fc7); SSDH's code fine-tunes the whole VGG16 on the images,
and here trains the layers above the (fixed) features, which stand for its fc7 output. Each
module's docstring says which of the authors' files its formulas and settings were checked
against; the papers' equation and section numbers are not cited (their text beyond the
abstracts could not be read when they were checked).

This ``__init__`` holds what the modules share: a seeded torch context that leaves the global
random state alone, row-block encoding through a torch function, the state checks of
:mod:`pipeline.baselines`, and the hash layer and Caffe-style SGD of the feature-level
variants. It imports none of the method modules.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from pipeline.baselines import block_rows, encode_blocks, encode_inputs

__all__ = ["HashLayerNet", "as_tensor", "caffe_sgd", "encode_torch", "epoch_batches",
           "load_hash_layer_net", "seeded", "positive_int", "number"]


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's CPU generator seeded by ``seed``; restore it afterwards, so
    that a method's initialisation and batch order depend on its seed only."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def as_tensor(X: Any) -> torch.Tensor:
    """float32 torch tensor of the rows of ``X`` (no copy when already float32 numpy)."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(X, dtype=np.float32)))


def epoch_batches(n: int, batch_size: int, drop_last: bool = True) -> list[torch.Tensor]:
    """Index batches of one shuffled pass over ``n`` rows, drawn from torch's generator.

    With ``drop_last`` a pass holds ``n // batch_size`` full batches (one when ``n`` is smaller
    than a batch: all rows), as the authors' loaders do.
    """
    perm = torch.randperm(n)
    size = min(batch_size, n)
    stop = (n // size) * size if drop_last else n
    return [perm[i : i + size] for i in range(0, stop, size)]


class HashLayerNet(torch.nn.Module):
    """A hash layer on the (fixed) features, as the fc8 layers that DeepBit's and SADH's authors
    train on VGG16's frozen fc7 (their Caffe prototxts): [dropout, (linear, ReLU, dropout) per
    ``hidden`` width], then a linear layer of ``bits`` outputs; weights drawn from N(0, 0.01^2)
    and biases 0 (``gaussian`` filler, std 0.01). ``forward`` returns the pre-activation."""

    def __init__(self, d: int, hidden: list[int], bits: int, dropout: float) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = [torch.nn.Dropout(dropout)]
        width = d
        for h in hidden:
            layers += [torch.nn.Linear(width, h), torch.nn.ReLU(), torch.nn.Dropout(dropout)]
            width = h
        self.body = torch.nn.Sequential(*layers)
        self.hash = torch.nn.Linear(width, bits)
        with torch.no_grad():
            for layer in [*self.body, self.hash]:
                if isinstance(layer, torch.nn.Linear):
                    torch.nn.init.normal_(layer.weight, 0.0, 0.01)
                    layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hash(self.body(x))


def load_hash_layer_net(state: Any, keys: tuple[str, ...]) -> HashLayerNet | None:
    """The eval-mode :class:`HashLayerNet` of a fitted state (``dim``, ``hidden``, ``bits``,
    ``dropout``, ``net``), built without touching the global generator; ``None`` when the state
    lacks one of ``keys`` (:func:`encode_torch` then names what is missing)."""
    if not (isinstance(state, Mapping) and all(k in state for k in keys)):
        return None
    with seeded(0):  # the throw-away initial weights leave the global generator alone
        net = HashLayerNet(int(state["dim"]), list(state["hidden"]), int(state["bits"]),
                           float(state["dropout"]))
    net.load_state_dict(state["net"])
    return net.eval()


def caffe_sgd(
    net: torch.nn.Module, p: Mapping[str, Any],
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.StepLR]:
    """SGD as the authors' Caffe solvers set it: learning rate ``p["lr"]`` and weight decay
    ``p["weight_decay"]`` on weights, twice the rate and no decay on biases (``lr_mult: 2``,
    ``decay_mult: 0``), momentum ``p["momentum"]``, and the "step" policy: the rate times
    ``p["gamma"]`` every ``p["lr_step"]`` steps (call the scheduler once per step)."""
    weights = [q for name, q in net.named_parameters() if name.endswith("weight")]
    biases = [q for name, q in net.named_parameters() if name.endswith("bias")]
    opt = torch.optim.SGD([
        {"params": weights, "lr": p["lr"], "weight_decay": p["weight_decay"]},
        {"params": biases, "lr": 2 * p["lr"], "weight_decay": 0.0},
    ], lr=p["lr"], momentum=p["momentum"])
    return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=p["lr_step"], gamma=p["gamma"])


def encode_torch(
    state: Any, X: Any, params: Mapping[str, Any] | None, defaults: Mapping[str, Any],
    method: str, keys: tuple[str, ...], scores: Callable[[torch.Tensor], torch.Tensor],
) -> np.ndarray:
    """Codes ``scores(x) > 0`` as bool (N, bits), in row blocks, without gradients."""
    p, state, X = encode_inputs(state, X, params, defaults, method, keys)

    def score(block: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return scores(torch.from_numpy(block.astype(np.float32))).double().numpy()

    rows = min(block_rows(X.shape[1], p), 4096)
    return encode_blocks(X, int(state["bits"]), score, rows, method)


def positive_int(value: Any, name: str, method: str, low: int = 1) -> int:
    """``value`` as an int >= ``low``; a ValueError naming the method and key otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{method}: {name} must be an int >= {low}, got {value!r}")
    return int(value)


def network_shape(p: dict[str, Any], method: str) -> None:
    """Check (in place) a hashing network's ``hidden`` (a list of widths >= 1, converted to
    ints) and ``dropout`` (a number in [0, 1)); a ValueError naming the method and key.

    Example:
        >>> p = {"hidden": [8, 4], "dropout": 0.5}; network_shape(p, "m"); p
        {'hidden': [8, 4], 'dropout': 0.5}
        >>> network_shape({"hidden": 8, "dropout": 0.0}, "m")
        Traceback (most recent call last):
        ValueError: m: hidden must be a list of widths, got 8
    """
    p["dropout"] = number(p["dropout"], "dropout", method)
    if p["dropout"] >= 1:
        raise ValueError(f"{method}: dropout must be < 1, got {p['dropout']}")
    if not isinstance(p["hidden"], (list, tuple)):
        raise ValueError(f"{method}: hidden must be a list of widths, got {p['hidden']!r}")
    p["hidden"] = [positive_int(h, "hidden[]", method) for h in p["hidden"]]


def number(value: Any, name: str, method: str, low: float = 0.0, strict: bool = False) -> float:
    """``value`` as a finite float >= ``low`` (> with ``strict``); ValueError otherwise."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.number))
    if ok:
        value = float(value)
        ok = np.isfinite(value) and (value > low if strict else value >= low)
    if not ok:
        sign = ">" if strict else ">="
        raise ValueError(f"{method}: {name} must be a finite number {sign} {low}, got {value!r}")
    return float(value)
