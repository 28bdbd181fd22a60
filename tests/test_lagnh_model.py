"""LAGNH networks: resolved options (variant / ablation switches), shapes, gradients."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.lagnh import method
from pipeline.lagnh.graph import aux_similarity, cosine_aux_similarity, normalized_adjacency
from pipeline.lagnh.losses import (
    cosine_reconstruction_loss,
    feature_reconstruction_loss,
    inner_product_reconstruction_loss,
)
from pipeline.lagnh.model import (
    ABLATIONS,
    DEFAULT_PARAMS,
    Discriminator,
    LAGNHOptions,
    build_models,
    resolve_options,
)
from pipeline.lagnh.training import generator_terms

N, D, C = 8, 16, 4
SMALL = {"d_att": 8, "hidden": 12}


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(N, C, generator=g) < 0.5).float()
    x = torch.randn(N, D, generator=g) + y @ torch.randn(C, D, generator=g)
    return x, y


def _models(bits: int = 16, seed: int = 0, **params):
    # the authors' variant fixes d_att and hidden (512, 1024: still fast on 8 nodes)
    small = {} if params.get("variant") == "authors" else SMALL
    opts = resolve_options({**small, **params})
    torch.manual_seed(seed)
    return build_models(D, C, bits, opts)


def test_defaults_are_the_config_section() -> None:
    opts = resolve_options({})
    for key, value in DEFAULT_PARAMS.items():
        got = getattr(opts, key)
        assert (list(got) if isinstance(got, tuple) else got) == value, key
    assert opts == resolve_options(None)
    assert LAGNHOptions.from_dict(opts.to_dict()) == opts


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"variant": "official"}, "valid values: paper, authors"),
        ({"ablation": "no-gan"}, "valid values: none, no-aux, no-att"),
        ({"encode_mode": "knn"}, "valid values: inductive, batch"),
        ({"device": "tpu"}, "valid values: auto, cpu, cuda"),
        ({"lambda_1": 1.0}, "unknown parameter"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"d_att": 2.5}, "d_att must be an integer"),
        ({"sigma": 0.0}, "sigma must be >"),
        ({"dropout": 1.0}, "dropout must be in"),
        ({"lr": float("nan")}, "lr must be a finite number"),
    ],
)
def test_bad_params_raise(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        resolve_options(params)


def test_authors_variant_toggles_each_option() -> None:
    paper = resolve_options({"dropout": 0.0, "g_steps": 1, "d_att": 256})
    authors = resolve_options({"variant": "authors", "dropout": 0.0, "g_steps": 1})
    expected_paper = {"d_att": 256, "attention_norm": "sum", "graph": "fused", "sigma": None,
                      "adjacency": "sym", "dropout": 0.0, "gcn_init": "default",
                      "gcn_bias": True, "sign_zero": -1.0, "recons_target": "aux",
                      "cls_loss": "bce", "g_steps": 1}
    expected_authors = {"d_att": 512, "attention_norm": "l2", "graph": "visual", "sigma": 1.0,
                        "adjacency": "row", "dropout": 0.5, "gcn_init": "xavier",
                        "gcn_bias": False, "sign_zero": 0.0, "recons_target": "aux_cos",
                        "cls_loss": "soft_margin", "g_steps": 5}
    for key in expected_paper:
        assert getattr(paper, key) == expected_paper[key], key
        assert getattr(authors, key) == expected_authors[key], key
    assert (authors.lambda1, authors.lr, authors.batch_size) == (100.0, 1e-4, 1024)


def test_authors_variant_behaviour() -> None:
    gen, _ = _models(variant="authors")
    assert gen.opts.d_att == 512  # fixed by the variant
    assert gen.attention.norm == "l2"
    assert gen.gcn.conv1.bias is None and gen.gcn.conv2.bias is None
    assert gen.gcn.dropout == 0.5
    x, y = _data()
    gen.eval()
    out = gen(x, y)
    # S = S^v only, sigma^2 = 1, row normalisation: rows of S~ sum to 1
    sq = torch.cdist(out.x_att, out.x_att).square()
    assert torch.allclose(out.graph.s, torch.exp(-sq / 2), atol=1e-4)
    assert out.graph.s_a is None
    assert torch.allclose(out.graph.s_norm.sum(1), torch.ones(N), atol=1e-5)
    assert torch.allclose(gen.reconstruction_target(out, x, y), cosine_aux_similarity(y))


@pytest.mark.parametrize("bits", [16, 32, 64, 128])
def test_shapes(bits: int) -> None:
    gen, disc = _models(bits)
    x, y = _data()
    out = gen(x, y)
    assert out.z.shape == (N, bits)
    assert out.x_att.shape == (N, 8)
    assert out.graph.s_norm.shape == (N, N)
    assert out.cls_logits is not None and out.cls_logits.shape == (N, C)
    assert disc(out.z).shape == (N, 1)


def test_discriminator_layout() -> None:
    disc = Discriminator(32)
    shapes = [tuple(m.weight.shape) for m in disc.net if isinstance(m, torch.nn.Linear)]
    assert shapes == [(64, 32), (32, 64), (1, 32)]


@pytest.mark.parametrize("variant", ["paper", "authors"])
@pytest.mark.parametrize("ablation", ["none", "recons-feat", "no-att"])
def test_gradients_reach_every_generator_parameter(variant: str, ablation: str) -> None:
    gen, disc = _models(variant=variant, ablation=ablation)
    if variant == "authors":
        gen.gcn.dropout = 0.0  # keep every unit alive on 8 nodes
    x, y = _data()
    terms = generator_terms(gen, disc, x, y)
    terms["total"].backward()
    for name, p in gen.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
        assert torch.isfinite(p.grad).all(), name


def test_paper_graph_is_eq5_with_sym_normalisation() -> None:
    gen, _ = _models(mu=0.5, sigma=2.0)
    x, y = _data()
    out = gen(x, y)
    sq = torch.cdist(out.x_att, out.x_att).square()
    s_v = torch.exp(-sq / (2 * 2.0**2))
    assert torch.allclose(out.graph.s_v, s_v, atol=1e-4)
    assert torch.equal(out.graph.s_a, aux_similarity(y))
    assert torch.allclose(out.graph.s, 0.5 * s_v + y @ y.T, atol=1e-4)
    assert torch.allclose(out.graph.s_norm, normalized_adjacency(out.graph.s, "sym"))


# --- ablations: each switch really removes / changes its own term -------------------------

def test_no_aux_removes_every_use_of_y() -> None:
    gen, disc = _models(ablation="no-aux")
    assert gen.attention.lin_y is None and gen.head is None
    x, y = _data()
    out = gen(x, None)  # Y is not needed at all
    assert out.graph.s_a is None and out.cls_logits is None
    assert torch.equal(out.graph.s, out.graph.s_v)
    assert torch.equal(out.z, gen(x, y).z)  # and ignored when given
    terms = generator_terms(gen, disc, x, None)
    assert terms["cl"].item() == 0.0
    o = gen.opts
    assert terms["total"].item() == pytest.approx(
        (terms["gan_g"] + o.lambda1 * terms["recons"] + o.lambda2 * terms["quan"]).item(),
        rel=1e-6)
    assert terms["recons"].item() == pytest.approx(
        cosine_reconstruction_loss(out.z, out.graph.s_v, o.k).item(), rel=1e-6)


def test_lambda3_term_present_without_ablation_and_absent_under_no_aux() -> None:
    x, y = _data()
    totals = {}
    for abl in ("none", "no-aux"):
        for lam in (1.0, 1000.0):
            gen, disc = _models(ablation=abl, lambda3=lam)
            totals[abl, lam] = generator_terms(gen, disc, x, y)["total"].item()
    assert totals["none", 1000.0] > totals["none", 1.0] + 100
    assert totals["no-aux", 1000.0] == totals["no-aux", 1.0]


def test_no_att_uses_linear_map_of_x() -> None:
    gen, _ = _models(ablation="no-att")
    x, y = _data()
    out = gen(x, y)
    assert gen.attention.lin_y is None
    assert torch.equal(out.x_att, gen.attention.lin_x(x))
    assert out.graph.s_a is not None  # the graph still uses S^a


@pytest.mark.parametrize(("ablation", "graph"), [("only-Sv", "s_v"), ("only-Sa", "s_a")])
def test_only_one_graph(ablation: str, graph: str) -> None:
    gen, _ = _models(ablation=ablation)
    x, y = _data()
    out = gen(x, y)
    assert torch.equal(out.graph.s, getattr(out.graph, graph))


@pytest.mark.parametrize("ablation", [a for a in ABLATIONS if a.startswith("recons")])
def test_reconstruction_variants(ablation: str) -> None:
    gen, disc = _models(ablation=ablation)
    x, y = _data()
    out = gen(x, y)
    terms = generator_terms(gen, disc, x, y, out)
    k = gen.opts.k
    expected = {
        "recons-ZtZ": lambda: inner_product_reconstruction_loss(out.z, aux_similarity(y), k),
        "recons-feat": lambda: feature_reconstruction_loss(x, out.x_rec),
        "recons-S": lambda: cosine_reconstruction_loss(out.z, out.graph.s, k),
        "recons-Sv": lambda: cosine_reconstruction_loss(out.z, out.graph.s_v, k),
    }[ablation]()
    assert terms["recons"].item() == pytest.approx(expected.item(), rel=1e-6)
    paper = cosine_reconstruction_loss(out.z, aux_similarity(y), k)
    assert not math.isclose(terms["recons"].item(), paper.item(), rel_tol=1e-3)
    assert (gen.decoder is not None) == (ablation == "recons-feat")


def test_all_zero_label_row_no_nan() -> None:
    x, y = _data()
    y[2] = 0.0
    for params in ({}, {"ablation": "only-Sa"}, {"variant": "authors"}):
        gen, disc = _models(**params)
        terms = generator_terms(gen, disc, x, y)
        terms["total"].backward()
        assert all(torch.isfinite(t) for t in terms.values()), params
        assert all(torch.isfinite(p.grad).all() for p in gen.parameters() if p.grad is not None)


# --- variant "authors": every setting of the authors' code, fixed or refused ----------------

#: (key, the authors' value, another valid value) for every config key the variant fixes
AUTHORS_SETTINGS = [
    ("d_att", 512, 8),
    ("hidden", 1024, 2048),
    ("disc_hidden", (64, 32), [32]),
    ("lambda1", 100.0, 1.0),
    ("lambda2", 1.0, 0.5),
    ("lambda3", 1.0, 0.1),
    ("k", 1.0, 0.5),
    ("sigma", 1.0, 2.0),
    ("lr", 1e-4, 1e-3),
    ("batch_size", 1024, 64),
    ("epochs", 300, 10),
    ("g_steps", 5, 3),
    ("dropout", 0.5, 0.2),
    ("encode_mode", "batch", "inductive"),
    ("encode_batch_size", 256, 64),
]


@pytest.mark.parametrize(("key", "authors", "other"), AUTHORS_SETTINGS)
def test_authors_variant_replaces_unset_values(
    monkeypatch: pytest.MonkeyPatch, key: str, authors: object, other: object
) -> None:
    # whatever the schema default is, a value left at it (not set) becomes the authors' value
    monkeypatch.setitem(DEFAULT_PARAMS, key, other)
    for params in ({}, {key: other}, {key: authors}):
        opts = resolve_options({"variant": "authors", **params})
        assert getattr(opts, key) == authors, params
    assert getattr(resolve_options({key: other}), key) == (
        tuple(other) if isinstance(other, list) else other)  # the paper variant keeps it


@pytest.mark.parametrize(("key", "authors", "other"), AUTHORS_SETTINGS)
def test_authors_variant_refuses_conflicting_values(
    monkeypatch: pytest.MonkeyPatch, key: str, authors: object, other: object
) -> None:
    # a value that is neither the default nor the authors' was set on purpose: refuse it
    monkeypatch.setitem(DEFAULT_PARAMS, key, list(authors) if isinstance(authors, tuple)
                        else authors)
    with pytest.raises(ValueError) as err:
        resolve_options({"variant": "authors", key: other})
    msg = str(err.value)
    assert "authors" in msg and key in msg
    assert repr(other) in msg
    assert repr(list(authors) if isinstance(authors, tuple) else authors) in msg


def test_authors_variant_with_the_dataset_sections_of_config_yaml() -> None:
    cfg = yaml.safe_load((Path(__file__).parents[1] / "config.yaml").read_text())
    coco = resolve_options({**cfg["coco"].get("lagnh", {}), "variant": "authors"})
    expected = {"hidden": 1024, "lambda1": 100.0, "lambda2": 1.0, "lambda3": 1.0, "k": 1.0,
                "batch_size": 1024, "lr": 1e-4, "epochs": 300, "encode_mode": "batch",
                "encode_batch_size": 256, "d_att": 512, "disc_hidden": (64, 32),
                "sigma": 1.0, "dropout": 0.5, "g_steps": 5}
    assert {k: getattr(coco, k) for k in expected} == expected
    # NUS-WIDE's section sets GC width 2048 (Table 1); the authors' code has 1024
    assert cfg["nuswide"]["lagnh"]["hidden"] == 2048
    with pytest.raises(ValueError, match=r"fixes hidden = 1024 .* got hidden = 2048"):
        resolve_options({**cfg["nuswide"]["lagnh"], "variant": "authors"})


def test_authors_state_encodes_batchwise_in_blocks_of_256() -> None:
    state = {"format": method.STATE_FORMAT, "version": method.STATE_VERSION, "sigma": None,
             "options": resolve_options({"variant": "authors"}).to_dict()}
    opts = method.encode_options(state, {"encode_neighbors": 5, "device": "cpu"})
    assert (opts.encode_mode, opts.encode_batch_size, opts.encode_neighbors) == ("batch", 256, 5)
    with pytest.raises(ValueError, match="encode_batch_size = 256"):
        method.encode_options(state, {"encode_batch_size": 64})
    paper = {**state, "options": resolve_options({}).to_dict()}
    assert method.encode_options(paper, {"encode_batch_size": 64}).encode_batch_size == 64
