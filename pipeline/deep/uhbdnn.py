r"""UH-BDNN: unsupervised hashing with a binary deep neural network (the paper's deep baseline).

Do, Doan & Cheung, "Learning to Hash with Binary Deep Neural Network", ECCV 2016
(https://arxiv.org/abs/1607.05140); the authors' MATLAB code (github.com/dzungdoan6/uh-bdnn)
was read for the settings below.

Sources checked (2026-12-03): the formulas and settings below against the authors' code
(``runHash.m``, ``DeepNN_HASH/learn_all.m``, ``learnDeepNN.m``, ``deepNNCost.m``, ``learn_B.m``,
``initializeParameters.m``, ``utils/rescale_0_1.m``, ``extract_valset.m``). Of the paper only
the abstract could be read (https://unpaywall.org/10.1007%2F978-3-319-46454-1_14): equation
numbers not checked against the paper, so none are cited, nor values the paper states.

Network. :math:`n = 5` layers: the input :math:`x \in \mathbb{R}^d` (features rescaled to
[0, 1], see :func:`unit_scale`), two sigmoid layers of ``hidden`` units, the linear code layer
:math:`h = H^{(n-1)}(x) \in \mathbb{R}^L` (L = ``bits``), and a linear output layer that
reconstructs :math:`x` **from the binary code** :math:`b` of the same image:
:math:`\hat x = W^{(n-1)} b + c^{(n-1)}`.

Objective: the binary constraint on the code layer moved onto the auxiliary codes
:math:`B \in \{-1, 1\}^{L\times m}` and the independence and balance constraints
:math:`\frac1m HH^\top = I`, :math:`H\mathbf 1 = 0` relaxed into penalties, with the :math:`m`
training images as columns; the five terms as the authors' ``deepNNCost.m`` computes and
names them (equation numbers not checked against the paper):

.. math::
    J = \underbrace{\tfrac{1}{2m}\lVert X - W^{(n-1)}B - c^{(n-1)}\mathbf 1^\top\rVert^2}_{J_1}
      + \underbrace{\tfrac{\lambda_1}{2}\textstyle\sum_l \lVert W^{(l)}\rVert^2}_{J_2}
      + \underbrace{\tfrac{\lambda_2}{2m}\lVert H - B\rVert^2}_{J_3}
      + \underbrace{\tfrac{\lambda_3}{2}\lVert \tfrac1m HH^\top - I\rVert^2}_{J_4}
      + \underbrace{\tfrac{\lambda_4}{2m}\lVert H\mathbf 1\rVert^2}_{J_5}

(:func:`objective_terms`). Alternating optimisation (as the authors' ``learn_all.m``; section
numbers not checked against the paper):

* **(W, c)-step**, B fixed: L-BFGS on :math:`J` by back-propagation (``lbfgs_iters`` iterations;
  the authors' minFunc runs 400);
* **B-step**, network fixed: :math:`\min_B \lVert Y - W^{(n-1)}B\rVert^2 + \lambda_2\lVert H -
  B\rVert^2` with :math:`Y = X - c^{(n-1)}\mathbf 1^\top`, solved one bit (row of B) at a time
  in closed form by discrete cyclic coordinate descent (:func:`b_step`, ``dcc_sweeps`` = 10
  sweeps as the authors' ``learn_B.m``; started from the previous B rather than from B = 0 as
  theirs, so that no B-step raises the objective; ties go to -1 where MATLAB's ``sign`` gives 0).

Initialisation as the authors' code: B from ITQ on the rescaled training features
(:mod:`pipeline.baselines.itq`), each hidden layer's weights from the top eigenvectors of the
(uncentred) second-moment matrix of its input, biases 0, the output layer :math:`W^{(n-1)} =`
the first L columns of :math:`I_d`; one (W, c)-step, then ``iterations`` rounds of B-step and
(W, c)-step. Codes of new images: :math:`b = \operatorname{sgn}(H^{(n-1)}(x))`.

Settings (all optional) and their sources:
    hidden (list[int] | None): the two sigmoid layers' widths (default: ``None`` = the authors'
        table, [90, 20] / [90, 30] / [100, 40] / [120, 50] at 8 / 16 / 24 / 32 bits; other
        lengths scale the 32-bit row, ``ceil(120 L / 32), ceil(50 L / 32)``; the table was set
        for 320-d GIST and 784-d MNIST inputs).
    lambda1, lambda2, lambda3, lambda4 (float): 1e-5, 5e-2, 1e-2, 5e-7 (the authors'
        ``runHash.m``: ``10^-5``, ``5*10^-2``, ``10^-2``, ``0.5*10^-6``; the values the paper
        reports were not checked against its text).
    iterations (int): alternating rounds after the first (W, c)-step (default: ``20``, the
        authors' ``max_iter``; their ``learn_all.m`` stops early, keeping the previous network,
        when the MAP on a validation split of 1,000 training images with Euclidean-neighbour
        ground truth stops improving, which this implementation does not do).
    lbfgs_iters (int): L-BFGS iterations per (W, c)-step (default: ``400``, the authors'
        ``iter_lbfgs``).
    dcc_sweeps (int): sweeps over the bits in a B-step (default: ``10``).
    block_rows (int): rows per block when encoding.

Shapes:
    fit: X (m, d) -> state; encode: X (N, d) -> bool (N, L); L <= d.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from pipeline.baselines import check_bits, check_features, check_seed, itq, resolve_params
from pipeline.deep import as_tensor, encode_torch, number, positive_int, seeded

__all__ = ["DEFAULTS", "b_step", "encode", "fit", "hidden_sizes", "objective_terms",
           "unit_scale"]

log = logging.getLogger("pipeline.deep.uhbdnn")

METHOD = "uhbdnn"
#: default parameters (the authors' code; module docstring)
DEFAULTS: dict[str, Any] = {
    "hidden": None, "lambda1": 1e-5, "lambda2": 5e-2, "lambda3": 1e-2, "lambda4": 5e-7,
    "iterations": 20, "lbfgs_iters": 400, "dcc_sweeps": 10,
}
#: keys a ``methods`` row may set (checked at start-up by :func:`pipeline.methods.check_params`)
PARAMS: tuple[str, ...] = (*DEFAULTS, "block_rows")
#: the authors' hidden widths per code length (runHash.m)
AUTHORS_HIDDEN: dict[int, tuple[int, int]] = {8: (90, 20), 16: (90, 30), 24: (100, 40),
                                              32: (120, 50)}


def hidden_sizes(bits: int, hidden: Sequence[int] | None = None) -> tuple[int, int]:
    """Widths of the two sigmoid layers: ``hidden`` when given, else the authors' table.

    Example:
        >>> hidden_sizes(16), hidden_sizes(64), hidden_sizes(32, [200, 40])
        ((90, 30), (240, 100), (200, 40))
    """
    if hidden is not None:
        if len(hidden) != 2:
            raise ValueError(f"{METHOD}: hidden must list two widths, got {list(hidden)!r}")
        return (positive_int(hidden[0], "hidden[0]", METHOD),
                positive_int(hidden[1], "hidden[1]", METHOD))
    if bits in AUTHORS_HIDDEN:
        return AUTHORS_HIDDEN[bits]
    return math.ceil(120 * bits / 32), math.ceil(50 * bits / 32)


def unit_scale(X: np.ndarray) -> tuple[np.ndarray, float]:
    """The authors' rescaling to [0, 1]: per-dimension minimum, one range for all dimensions.

    Returns ``(mins (d,), range)`` with ``x' = (x - mins) / range``.

    Example:
        >>> unit_scale(np.array([[0.0, 1.0], [2.0, 2.0]]))
        (array([0., 1.]), 2.0)
    """
    X = np.asarray(X, dtype=np.float64)
    mins = X.min(axis=0)
    spread = float((X.max(axis=0) - mins).max())
    if spread <= 0:
        raise ValueError(f"{METHOD}: all training features are identical; cannot rescale")
    return mins, spread


def objective_terms(
    X: torch.Tensor, H: torch.Tensor, B: torch.Tensor, W_out: torch.Tensor, c_out: torch.Tensor,
    weights: Sequence[torch.Tensor], lambdas: Sequence[float],
) -> dict[str, torch.Tensor]:
    r"""The five terms of UH-BDNN's objective (module docstring; as the authors'
    ``deepNNCost.m``), rows = images.

    Args:
        X: inputs (m, d); H: code-layer outputs (m, L); B: binary codes in {-1, 1} (m, L).
        W_out: output layer (L, d) (so that :math:`\hat x^\top = b^\top W_{out} + c^\top`);
        c_out: its bias (d,); weights: every layer's weight matrix (for :math:`J_2`);
        lambdas: :math:`(\lambda_1, \lambda_2, \lambda_3, \lambda_4)`.

    Returns:
        ``{"J1": ..., "J2": ..., "J3": ..., "J4": ..., "J5": ..., "J": sum}``.

    Example (m = 2, L = d = 1):
        >>> t = objective_terms(torch.tensor([[1.], [0.]]), torch.tensor([[2.], [0.]]),
        ...                     torch.tensor([[1.], [-1.]]), torch.tensor([[1.]]),
        ...                     torch.tensor([0.]), [torch.tensor([[1.]])], (1., 1., 1., 1.))
        >>> [round(float(t[k]), 4) for k in ("J1", "J2", "J3", "J4", "J5", "J")]
        [0.25, 0.5, 0.5, 0.5, 1.0, 2.75]
    """
    lam1, lam2, lam3, lam4 = lambdas
    m = X.shape[0]
    L = H.shape[1]
    J1 = ((X - B @ W_out - c_out) ** 2).sum() / (2 * m)
    J2 = (lam1 / 2) * sum((w**2).sum() for w in weights)
    J3 = (lam2 / (2 * m)) * ((H - B) ** 2).sum()
    gram = H.T @ H / m - torch.eye(L, dtype=H.dtype)
    J4 = (lam3 / 2) * (gram**2).sum()
    J5 = (lam4 / (2 * m)) * (H.sum(dim=0) ** 2).sum()
    return {"J1": J1, "J2": J2, "J3": J3, "J4": J4, "J5": J5, "J": J1 + J2 + J3 + J4 + J5}


def b_step(Y: np.ndarray, W_out: np.ndarray, H: np.ndarray, lambda2: float,
           sweeps: int = 10, B0: np.ndarray | None = None) -> np.ndarray:
    r"""B-step: :math:`\min_{B\in\{-1,1\}^{m\times L}} \lVert Y - BW\rVert^2 + \lambda_2
    \lVert H - B\rVert^2` by discrete cyclic coordinate descent over the bits.

    With :math:`Q = YW^\top + \lambda_2 H`, bit k given the others is
    :math:`b_k = \operatorname{sgn}(q_k - B_{\neg k} W_{\neg k} w_k^\top)` (ties to -1). The
    authors' ``learn_B.m`` starts the sweeps from B = 0; from ``B0`` (the previous codes) each
    update can only lower the cost, so the alternation's objective never rises.

    Args:
        Y: targets minus the output bias (m, d); W_out: output layer (L, d); H: code layer
        (m, L); lambda2: weight of :math:`\lVert H - B\rVert^2`; sweeps: passes over the bits;
        B0: the codes to start from (m, L) in {-1, 1} (default: zeros).

    Example (one bit, Y = 0): b = sgn(lambda2 h)
        >>> b_step(np.zeros((2, 1)), np.ones((1, 1)), np.array([[0.3], [-0.2]]), 0.5)
        array([[ 1.],
               [-1.]])
    """
    Q = Y @ W_out.T + lambda2 * H
    m, L = H.shape
    B = np.zeros((m, L)) if B0 is None else np.array(B0, dtype=np.float64)
    G = W_out @ W_out.T  # (L, L): G[j, k] = w_j . w_k
    for _ in range(sweeps):
        for k in range(L):
            others = B @ G[:, k] - B[:, k] * G[k, k]
            B[:, k] = np.where(Q[:, k] - others > 0, 1.0, -1.0)
    return B


class _Net(torch.nn.Module):
    """x -> sigmoid -> sigmoid -> linear code layer H; a linear output layer from the codes."""

    def __init__(self, d: int, h1: int, h2: int, bits: int) -> None:
        super().__init__()
        self.l1 = torch.nn.Linear(d, h1)
        self.l2 = torch.nn.Linear(h1, h2)
        self.l3 = torch.nn.Linear(h2, bits)
        self.out = torch.nn.Linear(bits, d)

    def code_layer(self, x: torch.Tensor) -> torch.Tensor:
        return self.l3(torch.sigmoid(self.l2(torch.sigmoid(self.l1(x)))))

    def weights(self) -> list[torch.Tensor]:
        return [self.l1.weight, self.l2.weight, self.l3.weight, self.out.weight]


def _pca_init(layer: torch.nn.Linear, inputs: torch.Tensor) -> None:
    """Weights = top eigenvectors of the inputs' uncentred second moment; bias 0 (authors)."""
    moment = (inputs.T.double() @ inputs.double()) / inputs.shape[0]
    evals, evecs = torch.linalg.eigh(moment)
    top = evecs[:, torch.argsort(evals, descending=True)[: layer.out_features]]
    signs = torch.sign(top.gather(0, top.abs().argmax(0, keepdim=True)))
    top = top * torch.where(signs == 0, 1.0, signs)  # largest entry positive: reproducible
    with torch.no_grad():
        layer.weight.copy_(top.T.float())
        layer.bias.zero_()


def _w_step(net: _Net, X: torch.Tensor, B: torch.Tensor, lambdas: Sequence[float],
            iters: int) -> dict[str, float]:
    """(W, c)-step: L-BFGS with strong-Wolfe line search on J for fixed B."""
    opt = torch.optim.LBFGS(net.parameters(), lr=1.0, max_iter=iters, max_eval=iters * 5 // 4,
                            tolerance_grad=1e-9, tolerance_change=1e-12, history_size=100,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        J = objective_terms(X, net.code_layer(X), B, net.out.weight.T, net.out.bias,
                            net.weights(), lambdas)["J"]
        J.backward()
        return J

    opt.step(closure)
    with torch.no_grad():
        terms = objective_terms(X, net.code_layer(X), B, net.out.weight.T, net.out.bias,
                                net.weights(), lambdas)
    return {k: float(v) for k, v in terms.items()}


def _params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    p = resolve_params(params, DEFAULTS, METHOD)
    for key in ("lambda1", "lambda2", "lambda3", "lambda4"):
        p[key] = number(p[key], key, METHOD)
    p["iterations"] = positive_int(p["iterations"], "iterations", METHOD, low=0)
    p["lbfgs_iters"] = positive_int(p["lbfgs_iters"], "lbfgs_iters", METHOD)
    p["dcc_sweeps"] = positive_int(p["dcc_sweeps"], "dcc_sweeps", METHOD)
    if p["hidden"] is not None and not isinstance(p["hidden"], (list, tuple)):
        raise ValueError(f"{METHOD}: hidden must be null or a list of two ints, got "
                         f"{p['hidden']!r}")
    return p


def check_params(params: Mapping[str, Any]) -> None:
    """Refuse unknown keys and bad values before the workflow runs (pipeline.methods)."""
    p = _params(params)
    if p["hidden"] is not None:
        hidden_sizes(32, p["hidden"])


def fit(
    X: np.ndarray,
    Y: np.ndarray | None,
    bits: int,
    params: Mapping[str, Any] | None,
    seed: int,
) -> dict[str, Any]:
    """Train UH-BDNN at ``bits`` on the training features ``X``; ``Y`` is ignored.

    Args:
        X (np.ndarray): training features (m, d).
        Y: auxiliary labels, ignored.
        bits (int): code length L <= d (ITQ initialises B).
        params (dict): see the module docstring.
        seed (int): seeds ITQ's initial rotation (the rest is deterministic given it).

    Returns:
        state dict: ``mins``, ``scale``, ``hidden``, ``net`` (torch state_dict), ``bits``,
        ``dim``, ``history`` (one row per (W, c)-step with the five terms).
    """
    p = _params(params)
    seed = check_seed(seed, METHOD)
    X = check_features(X, METHOD)
    m, d = X.shape
    bits = check_bits(bits, METHOD, max_bits=d)
    h1, h2 = hidden_sizes(bits, p["hidden"])
    if not bits <= h2 <= h1 <= d:
        raise ValueError(f"{METHOD}: layer widths must satisfy bits <= hidden[1] <= hidden[0] "
                         f"<= d (PCA initialisation), got {bits}, {h2}, {h1}, {d}; set hidden")
    mins, spread = unit_scale(X)
    Xs = (np.asarray(X, dtype=np.float64) - mins) / spread
    lambdas = (p["lambda1"], p["lambda2"], p["lambda3"], p["lambda4"])
    B = np.where(itq.encode(itq.fit(Xs, None, bits, {}, seed), Xs), 1.0, -1.0)
    with seeded(seed):
        net = _Net(d, h1, h2, bits)
    Xt = as_tensor(Xs)
    with torch.no_grad():
        _pca_init(net.l1, Xt)
        a1 = torch.sigmoid(net.l1(Xt))
        _pca_init(net.l2, a1)
        _pca_init(net.l3, torch.sigmoid(net.l2(a1)))
        net.out.weight.copy_(torch.eye(d, bits))
        net.out.bias.zero_()
    history = []
    for it in range(p["iterations"] + 1):
        if it > 0:
            with torch.no_grad():
                H = net.code_layer(Xt).double().numpy()
                Yc = Xs - net.out.bias.double().numpy()
                B = b_step(Yc, net.out.weight.T.double().numpy(), H, p["lambda2"],
                           p["dcc_sweeps"], B0=B)
        terms = _w_step(net, Xt, torch.from_numpy(B).float(), lambdas, p["lbfgs_iters"])
        history.append({"iter": it, **terms})
        log.info("%s: round %d/%d J=%.5f", METHOD, it, p["iterations"], terms["J"])
    return {
        "method": METHOD, "bits": bits, "dim": d, "mins": mins, "scale": spread,
        "hidden": [h1, h2], "net": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "history": history,
    }


def encode(
    state: Mapping[str, Any],
    X: np.ndarray,
    Y: np.ndarray | None = None,
    params: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Codes ``sgn(H(x))`` of the code layer as bool (N, bits), True = +1; in row blocks."""
    keys = ("mins", "scale", "hidden", "net")
    if isinstance(state, Mapping) and "hidden" in state:
        h1, h2 = state["hidden"]
        net = _Net(int(state["dim"]), h1, h2, int(state["bits"]))
        net.load_state_dict(state["net"])
        net.eval()
        mins = torch.from_numpy(np.asarray(state["mins"], dtype=np.float32))
        scale = float(state["scale"])
    else:
        net = mins = scale = None  # encode_inputs below names what is missing

    def scores(x: torch.Tensor) -> torch.Tensor:
        return net.code_layer((x - mins) / scale)

    return encode_torch(state, X, params, DEFAULTS, METHOD, keys, scores)
