r"""LAGNH networks and their resolved options (Fig. 1 and Table 1 of the paper).

Cui et al., "Two-pronged Strategy: Lightweight Augmented Graph Network Hashing for Scalable
Image Retrieval", ACM MM 2021, https://doi.org/10.1145/3474085.3475605.

* :class:`LAGNHGenerator` — cross-modal attention (Eq. 1–2) → augmented graph (Eq. 3–5) →
  two-layer GCN (Eq. 6–7) → :math:`Z`, plus the linear classifier head :math:`r \to c` of
  Eq. (11) and, for the ``recons-feat`` ablation, a linear decoder :math:`r \to d`.
* :class:`Discriminator` — the MLP :math:`r \to 64 \to 32 \to 1` of Eq. (10) / Table 1.
* :class:`LAGNHOptions` / :func:`resolve_options` — the single place where the config section
  (``params``), the ``variant`` (paper text vs. the authors' code, see REFERENCE.md) and the
  Table 5 ``ablation`` are turned into explicit switches.

Variant ``"authors"`` fixes every setting of the authors' code (REFERENCE.md):
the config keys of :data:`AUTHORS_PARAMS` (``d_att = 512``, ``hidden = 1024``, D
:math:`r \to 64 \to 32 \to 1`, λ1 = 100, λ2 = λ3 = 1, k = 1, :math:`\sigma^2 = 1`, Adam 1e-4,
batches of 1,024, 300 epochs, 5 generator steps per discriminator step, dropout 0.5, batch-wise
encoding in blocks of 256) and the switches row-L2 attention, :math:`S = S^v` (fusion 0),
:math:`D^{-1}S`, Xavier init and no GCN bias, :math:`\mathrm{sgn}(0) = 0` in Eq. (8),
reconstruction target :math:`[\cos(Y, Y)]_+`, ``MultiLabelSoftMarginLoss``. A key of
:data:`AUTHORS_PARAMS` left at its default (or set to the authors' value) takes the authors'
value; any other value raises ``ValueError`` (never a silent override).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from pipeline import schema

from .attention import CrossModalAttention
from .gcn import GCN
from .graph import (
    augmented_graph,
    aux_similarity,
    cosine_aux_similarity,
    default_sigma,
    gaussian_similarity,
    normalized_adjacency,
    normalized_gaussian_graph,
)

VARIANTS = ("paper", "authors")
ABLATIONS = (
    "none",
    "no-aux",
    "no-att",
    "only-Sv",
    "only-Sa",
    "recons-ZtZ",
    "recons-feat",
    "recons-S",
    "recons-Sv",
)
ENCODE_MODES = ("inductive", "batch")
#: Neighbour weights of the inductive encoding: a training batch's share, or unscaled.
ENCODE_SCALES = ("batch", "none")
DEVICES = ("auto", "cpu", "cuda")
#: Reconstruction predictions: [cos(Z,Z)]_+ (Eq. 9), Z Z^T (recons-ZtZ), decoder X̂ (recons-feat).
RECONS_PREDS = ("cos", "inner", "feat")
#: Reconstruction targets: S^a = YY^T (paper), [cos(Y,Y)]_+ (authors), S (recons-S),
#: S^v (recons-Sv, no-aux), features X (recons-feat).
RECONS_TARGETS = ("aux", "aux_cos", "graph", "visual", "features")

#: The ``lagnh`` config section: every key and its default, read from the schema (the one place
#: a default lives; ``schemas/config.schema.yaml``, ``$defs/lagnh``).
DEFAULT_PARAMS: dict[str, Any] = schema.defaults("lagnh")

#: The config keys that ``variant="authors"`` fixes, with the authors' values (REFERENCE.md).
AUTHORS_PARAMS: dict[str, Any] = {
    "d_att": 512,
    "hidden": 1024,
    "disc_hidden": [64, 32],
    "lambda1": 100.0,
    "lambda2": 1.0,
    "lambda3": 1.0,
    "k": 1.0,
    "sigma": 1.0,
    "lr": 1e-4,
    "batch_size": 1024,
    "epochs": 300,
    "g_steps": 5,
    "dropout": 0.5,
    "encode_mode": "batch",
    "encode_batch_size": 256,
}


@dataclass(frozen=True)
class LAGNHOptions:
    """Every switch of the model, resolved from ``params`` + ``variant`` + ``ablation``.

    The first block mirrors the config keys (after the variant's overrides); the second block
    holds the switches each variant/ablation sets. Build it with :func:`resolve_options`.
    """

    # the config keys: no dataclass defaults, :func:`resolve_options` sets every one from
    # DEFAULT_PARAMS (the schema's defaults) and the section
    variant: str
    ablation: str
    d_att: int
    hidden: int
    disc_hidden: tuple[int, ...]
    lambda1: float
    lambda2: float
    lambda3: float
    k: float
    mu: float
    sigma: float | None
    lr: float
    batch_size: int
    epochs: int
    g_steps: int
    dropout: float
    encode_mode: str
    encode_batch_size: int
    encode_neighbors: int | None
    encode_scale: str  #: "batch" (:func:`~pipeline.lagnh.encoding.batch_scale`) | "none"
    sigma_neighbors: float  #: k of the default bandwidth rule (graph.default_sigma)
    recons_clip: bool  #: Eq. (9)'s target clipped at 1, the reach of [cos]_+
    device: str
    # --- resolved switches -------------------------------------------------------------
    use_aux: bool = True  #: Y used at all (False under ``no-aux``)
    attention: bool = True  #: Eq. 1–2 on (False: x_att = x̄, ``no-att``/``no-aux``)
    attention_norm: str = "sum"  #: "sum" (Eq. 2) | "l2" (authors)
    graph: str = "fused"  #: "fused" (Eq. 5) | "visual" | "aux"
    adjacency: str = "sym"  #: "sym" D^-1/2 S D^-1/2 | "row" D^-1 S
    gcn_init: str = "default"  #: "default" | "xavier"
    gcn_bias: bool = True
    sign_zero: float = -1.0  #: sgn(0) in Eq. 8 (-1 paper, 0 torch.sign)
    recons_pred: str = "cos"  #: see RECONS_PREDS
    recons_target: str = "aux"  #: see RECONS_TARGETS
    cls_loss: str | None = "bce"  #: "bce" | "soft_margin" | None (no Eq. 11 term)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python copy (tuples as lists) for ``torch.save`` / JSON."""
        out = asdict(self)
        out["disc_hidden"] = list(self.disc_hidden)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LAGNHOptions:
        d = dict(d)
        d["disc_hidden"] = tuple(d["disc_hidden"])
        return cls(**d)


def _check_choice(name: str, value: Any, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise ValueError(f"lagnh: unknown {name} {value!r}; valid values: {', '.join(valid)}")
    return str(value)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ValueError(f"lagnh: {name} must be an integer, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"lagnh: {name} must be >= {minimum}, got {value!r}")
    return int(value)


def _check_float(name: str, value: Any, minimum: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"lagnh: {name} must be a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        op = ">" if strict else ">="
        raise ValueError(f"lagnh: {name} must be {op} {minimum}, got {value!r}")
    return float(value)


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"lagnh: {name} must be true or false, got {value!r}")
    return value


def _same_value(a: Any, b: Any) -> bool:
    """``a == b`` for config values: lists and tuples alike, ``True`` never equal to ``1``."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_value(u, v) for u, v in zip(a, b, strict=True))
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _fix_authors_params(p: dict[str, Any]) -> dict[str, Any]:
    """``p`` with every key of :data:`AUTHORS_PARAMS` set to the authors' value.

    A value equal to the default (i.e. not set) or to the authors' value is replaced; any other
    raises ``ValueError`` naming the key, the given value and the authors' value.
    """
    out = dict(p)
    for key, fixed in AUTHORS_PARAMS.items():
        value = p[key]
        if not (_same_value(value, fixed) or _same_value(value, DEFAULT_PARAMS[key])):
            raise ValueError(
                f"lagnh: variant 'authors' fixes {key} = {fixed!r} (the authors' code), got "
                f"{key} = {value!r}; remove the key, set it to {fixed!r}, or use variant 'paper'")
        out[key] = list(fixed) if isinstance(fixed, list) else fixed
    return out


def resolve_options(params: dict[str, Any] | None = None) -> LAGNHOptions:
    """Validate the ``lagnh`` config section and resolve variant + ablation into switches.

    Missing keys take :data:`DEFAULT_PARAMS`; unknown keys raise ``ValueError`` naming the valid
    keys. See the module docstring for what ``variant="authors"`` fixes (a conflicting value
    raises ``ValueError``) and :data:`ABLATIONS` for the Table 5 switches (each changes only
    its own piece):

    ``no-aux``  Y unused: no attention, :math:`S = S^v`, reconstruct :math:`S^v`, no Eq. (11).
    ``no-att``  :math:`x^{att} = \\bar{x}` (linear map of x, no attention on Y).
    ``only-Sv`` / ``only-Sa``  :math:`S = S^v` / :math:`S = S^a`.
    ``recons-ZtZ``  :math:`\\lVert kS^a - ZZ^\\top\\rVert^2`.  ``recons-feat``  decoder
    :math:`\\hat{X}`, :math:`\\lVert X - \\hat{X}\\rVert^2`.  ``recons-S`` / ``recons-Sv``
    reconstruct :math:`S` / :math:`S^v` instead of :math:`S^a`.
    """
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise ValueError(f"lagnh: unknown parameter(s) {unknown}; valid keys: "
                         f"{', '.join(DEFAULT_PARAMS)}")
    p = {**DEFAULT_PARAMS, **params}

    variant = _check_choice("variant", p["variant"], VARIANTS)
    ablation = _check_choice("ablation", p["ablation"], ABLATIONS)
    if variant == "authors":
        p = _fix_authors_params(p)
    disc_hidden = p["disc_hidden"]
    if not isinstance(disc_hidden, (list, tuple)):
        raise ValueError(f"lagnh: disc_hidden must be a list of integers, got {disc_hidden!r}")
    neighbors = p["encode_neighbors"]
    opts: dict[str, Any] = {
        "variant": variant,
        "ablation": ablation,
        "d_att": _check_int("d_att", p["d_att"], 1),
        "hidden": _check_int("hidden", p["hidden"], 1),
        "disc_hidden": tuple(_check_int("disc_hidden", h, 1) for h in disc_hidden),
        "lambda1": _check_float("lambda1", p["lambda1"]),
        "lambda2": _check_float("lambda2", p["lambda2"]),
        "lambda3": _check_float("lambda3", p["lambda3"]),
        "k": _check_float("k", p["k"]),
        "mu": _check_float("mu", p["mu"]),
        "sigma": None if p["sigma"] is None else _check_float("sigma", p["sigma"], strict=True),
        "lr": _check_float("lr", p["lr"], strict=True),
        "batch_size": _check_int("batch_size", p["batch_size"], 1),
        "epochs": _check_int("epochs", p["epochs"], 0),
        "g_steps": _check_int("g_steps", p["g_steps"], 1),
        "dropout": _check_float("dropout", p["dropout"]),
        "encode_mode": _check_choice("encode_mode", p["encode_mode"], ENCODE_MODES),
        "encode_batch_size": _check_int("encode_batch_size", p["encode_batch_size"], 1),
        "encode_neighbors": None if neighbors is None
        else _check_int("encode_neighbors", neighbors, 0),
        "encode_scale": _check_choice("encode_scale", p["encode_scale"], ENCODE_SCALES),
        "sigma_neighbors": _check_float("sigma_neighbors", p["sigma_neighbors"], strict=True),
        "recons_clip": _check_bool("recons_clip", p["recons_clip"]),
        "device": _check_choice("device", p["device"], DEVICES),
    }
    if opts["dropout"] >= 1.0:
        raise ValueError(f"lagnh: dropout must be in [0, 1), got {opts['dropout']!r}")

    if variant == "authors":
        opts.update(  # the switches; the config keys were fixed above (AUTHORS_PARAMS)
            attention_norm="l2",
            graph="visual",
            adjacency="row",
            gcn_init="xavier",
            gcn_bias=False,
            sign_zero=0.0,
            recons_target="aux_cos",
            cls_loss="soft_margin",
        )

    if ablation == "no-aux":
        opts.update(use_aux=False, attention=False, graph="visual", recons_target="visual",
                    cls_loss=None)
    elif ablation == "no-att":
        opts.update(attention=False)
    elif ablation == "only-Sv":
        opts.update(graph="visual")
    elif ablation == "only-Sa":
        opts.update(graph="aux")
    elif ablation == "recons-ZtZ":
        opts.update(recons_pred="inner")
    elif ablation == "recons-feat":
        opts.update(recons_pred="feat", recons_target="features")
    elif ablation == "recons-S":
        opts.update(recons_target="graph")
    elif ablation == "recons-Sv":
        opts.update(recons_target="visual")
    return LAGNHOptions(**opts)


class GraphParts(NamedTuple):
    """The graphs of one node set: S^v (Eq. 3), S^a (Eq. 4), S (Eq. 5), normalised S̃, and the
    bandwidth σ used for S^v (None when S^v is not built)."""

    s_v: Tensor | None
    s_a: Tensor | None
    s: Tensor
    s_norm: Tensor
    sigma: Tensor | None = None


class GeneratorOutput(NamedTuple):
    """Everything the losses need from one generator forward pass."""

    z: Tensor  #: GCN output Z, (n, r)
    x_att: Tensor  #: attentive features, (n, d')
    graph: GraphParts
    cls_logits: Tensor | None  #: classifier head f(Z), (n, c)
    x_rec: Tensor | None  #: decoder output X̂, (n, d) (``recons-feat`` only)


class LAGNHGenerator(nn.Module):
    r"""Attention + augmented graph + GCN generator (Fig. 1), with its auxiliary heads.

    Args:
        in_features (int): image feature dimension :math:`d` (4096 for VGG16 fc7).
        n_classes (int): number of auxiliary classes :math:`c`.
        bits (int): code length :math:`r`.
        opts (LAGNHOptions): resolved options.

    Shapes: ``x`` (n, d), ``y`` (n, c) -> ``z`` (n, r).
    """

    def __init__(self, in_features: int, n_classes: int, bits: int, opts: LAGNHOptions) -> None:
        super().__init__()
        self.opts = opts
        self.attention = CrossModalAttention(
            in_features, n_classes, opts.d_att, norm=opts.attention_norm, attend=opts.attention
        )
        self.gcn = GCN(opts.d_att, opts.hidden, bits, dropout=opts.dropout,
                       bias=opts.gcn_bias, init=opts.gcn_init)
        self.head = nn.Linear(bits, n_classes) if opts.cls_loss is not None else None
        self.decoder = nn.Linear(bits, in_features) if opts.recons_pred == "feat" else None

    # -- pieces --------------------------------------------------------------------------
    def needs_visual(self) -> bool:
        """Whether S^v is needed (for the GCN graph or as reconstruction target)."""
        o = self.opts
        return o.graph in ("fused", "visual") or o.recons_target == "visual"

    def needs_aux(self) -> bool:
        """Whether S^a = YY^T is needed (for the GCN graph or as reconstruction target)."""
        o = self.opts
        return o.use_aux and (o.graph in ("fused", "aux") or o.recons_target == "aux")

    def build_graph(self, x_att: Tensor, y: Tensor | None) -> GraphParts:
        """Eq. (3)–(5) and the normalisation over the given node set (one minibatch)."""
        o = self.opts
        s_a = aux_similarity(y) if (self.needs_aux() and y is not None) else None
        if o.graph == "aux":
            s_v = sigma = None
            if self.needs_visual():  # S^v only as reconstruction target
                x_d = x_att.detach()
                sigma = default_sigma(x_d, o.sigma_neighbors) if o.sigma is None \
                    else torch.tensor(o.sigma, device=x_d.device)
                s_v = gaussian_similarity(x_d, sigma)
            s = augmented_graph(None, s_a, o.mu, "aux")
            return GraphParts(s_v, s_a, s, normalized_adjacency(s, o.adjacency), sigma)
        s_norm, s_v, s, sigma = normalized_gaussian_graph(
            x_att, s_a if o.graph == "fused" else None, o.mu, o.sigma, o.adjacency,
            sigma_k=o.sigma_neighbors,
        )
        return GraphParts(s_v, s_a, s, s_norm, sigma)

    def forward(self, x: Tensor, y: Tensor | None) -> GeneratorOutput:
        y = y if self.opts.use_aux else None
        if self.attention.attend:
            if y is None:
                raise ValueError("LAGNHGenerator needs auxiliary labels y for the attention")
            x_att = self.attention(x, y)
        else:
            x_att = self.attention.project(x)
        graph = self.build_graph(x_att, y)
        z = self.gcn(x_att, graph.s_norm)
        logits = self.head(z) if self.head is not None else None
        x_rec = self.decoder(z) if self.decoder is not None else None
        return GeneratorOutput(z, x_att, graph, logits, x_rec)

    def reconstruction_target(self, out: GeneratorOutput, x: Tensor, y: Tensor | None) -> Tensor:
        """The matrix that Eq. (9) (or its Table 5 variant) reconstructs."""
        t = self.opts.recons_target
        if t == "aux":
            assert out.graph.s_a is not None
            return out.graph.s_a
        if t == "aux_cos":
            assert y is not None
            return cosine_aux_similarity(y)
        if t == "graph":
            return out.graph.s
        if t == "visual":
            assert out.graph.s_v is not None
            return out.graph.s_v
        return x  # "features"


class Discriminator(nn.Module):
    r"""Discriminator of Eq. (10), Table 1: :math:`r \to 64 \to 32 \to 1`, ReLU between, logits out.

    Args:
        bits (int): code length :math:`r`.
        hidden (tuple[int, ...]): hidden widths (default: ``(64, 32)``).

    Shapes: (n, r) -> (n, 1) logits.
    """

    def __init__(self, bits: int, hidden: tuple[int, ...] = (64, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = bits
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def build_models(
    in_features: int, n_classes: int, bits: int, opts: LAGNHOptions
) -> tuple[LAGNHGenerator, Discriminator]:
    """Generator and discriminator, initialised from the current torch RNG state."""
    gen = LAGNHGenerator(in_features, n_classes, bits, opts)
    disc = Discriminator(bits, opts.disc_hidden)
    return gen, disc


def pick_device(name: str = "auto") -> torch.device:
    """:func:`pipeline.device.pick_device` (the stages' one rule) as a ``torch.device``."""
    from pipeline.device import pick_device as choose

    return torch.device(choose(name))
