"""Augmented semantic graph, Eq. (3)–(5), and its normalisation: hand-computed examples."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.lagnh.graph import (
    augmented_graph,
    aux_similarity,
    cosine_aux_similarity,
    default_sigma,
    gaussian_similarity,
    normalized_adjacency,
    normalized_gaussian_graph,
    squared_distances,
)


def test_gaussian_kernel_value() -> None:
    # ||(0,0) - (3,4)||^2 = 25, sigma = 5: exp(-25 / 50) = exp(-0.5) = 0.606531
    s = gaussian_similarity(torch.tensor([[0.0, 0.0], [3.0, 4.0]]), sigma=5.0)
    assert s[0, 1].item() == pytest.approx(math.exp(-0.5), rel=1e-6)
    assert torch.equal(s.diagonal(), torch.ones(2))
    assert torch.equal(s, s.T)
    # sigma^2 = 1 (authors): exp(-25 / 2)
    s1 = gaussian_similarity(torch.tensor([[0.0, 0.0], [3.0, 4.0]]), sigma=1.0)
    assert s1[0, 1].item() == pytest.approx(math.exp(-12.5), rel=1e-5)


def test_default_sigma_rule() -> None:
    # 3 points with pairwise distances 5 (0-1), 0 (0-2), 5 (1-2): the target degree is capped at
    # (n-1)/2 = 1, and the mean over nodes of sum_{j!=i} S^v_ij is (2 + 4 e)/3 with
    # e = exp(-25 / (2 sigma^2)); = 1 at e = 1/4, i.e. sigma^2 = 25 / (2 ln 4), sigma = 3.00280
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    sigma = default_sigma(x)
    assert sigma.item() == pytest.approx(math.sqrt(25 / (2 * math.log(4))), rel=1e-5)
    assert gaussian_similarity(x)[0, 1].item() == pytest.approx(0.25, rel=1e-4)
    # 40 random points: on average 7 neighbours' worth of weight per node
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(0))
    degree = (gaussian_similarity(x, default_sigma(x)).sum(1) - 1).mean()
    assert degree.item() == pytest.approx(7.0, rel=1e-4)
    assert default_sigma(x[:1]).item() == 1.0  # a single node
    assert default_sigma(torch.zeros(4, 3)).item() == 1.0  # all nodes coincide
    assert not default_sigma(x.clone().requires_grad_(True)).requires_grad  # detached


def test_kernel_flushes_subnormals() -> None:
    # exp(-20^2 / 2) = exp(-200) underflows to a subnormal/zero: stored as exactly 0
    s = gaussian_similarity(torch.tensor([[0.0], [20.0], [13.3]]), sigma=1.0)
    assert s[0, 1].item() == 0.0 and s[0, 2].item() == 0.0  # exp(-88.4) ~ 3.9e-39 -> 0
    assert s[1, 2].item() == pytest.approx(math.exp(-0.5 * 6.7**2), rel=1e-4)
    assert not ((s > 0) & (s < torch.finfo(torch.float32).tiny)).any()


def test_squared_distances() -> None:
    a = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[1.0, 0.0]])
    assert torch.allclose(squared_distances(a, b), torch.tensor([[1.0], [1.0]]))
    assert torch.equal(squared_distances(a).diagonal(), torch.zeros(2))


def test_aux_similarity_and_cosine_target() -> None:
    y = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    assert torch.equal(aux_similarity(y), torch.tensor([[2.0, 1, 0], [1, 2, 0], [0, 0, 0]]))
    # cos([1,1,0],[0,1,1]) = 1/2; zero row -> 0 everywhere
    expected = torch.tensor([[1.0, 0.5, 0], [0.5, 1, 0], [0, 0, 0]])
    assert torch.allclose(cosine_aux_similarity(y), expected, atol=1e-6)


def test_augmented_graph_modes() -> None:
    s_v, s_a = torch.tensor([[1.0, 0.5], [0.5, 1.0]]), torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    assert torch.equal(augmented_graph(s_v, s_a, mu=2.0), torch.tensor([[4.0, 1.0], [1.0, 3.0]]))
    assert torch.equal(augmented_graph(s_v, s_a, mode="visual"), s_v)
    assert torch.equal(augmented_graph(s_v, s_a, mode="aux"), s_a)
    with pytest.raises(ValueError, match="valid values"):
        augmented_graph(s_v, s_a, mode="both")
    with pytest.raises(ValueError, match="needs both"):
        augmented_graph(s_v, None)


def test_normalisation_three_node_graph() -> None:
    # S = [[1, .5, 0], [.5, 1, .5], [0, .5, 1]]: degrees 1.5, 2, 1.5
    s = torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, 0.5], [0.0, 0.5, 1.0]])
    off = 0.5 / math.sqrt(1.5 * 2.0)  # 0.288675
    sym = torch.tensor([[1 / 1.5, off, 0.0], [off, 0.5, off], [0.0, off, 1 / 1.5]])
    assert torch.allclose(normalized_adjacency(s, "sym"), sym, atol=1e-6)
    row = torch.tensor([[2 / 3, 1 / 3, 0.0], [0.25, 0.5, 0.25], [0.0, 1 / 3, 2 / 3]])
    assert torch.allclose(normalized_adjacency(s, "row"), row, atol=1e-6)
    assert torch.allclose(normalized_adjacency(s, "row").sum(1), torch.ones(3))


@pytest.mark.parametrize("mode", ["sym", "row"])
def test_normalisation_degree_zero_guard(mode: str) -> None:
    s = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    out = normalized_adjacency(s, mode)
    assert torch.isfinite(out).all()
    assert torch.equal(out[2], torch.zeros(3))
    assert torch.equal(out[:, 2], torch.zeros(3))
    with pytest.raises(ValueError, match="valid values"):
        normalized_adjacency(s, "col")


@pytest.mark.parametrize("adjacency", ["sym", "row"])
@pytest.mark.parametrize("fusion", [None, 0.5])
@pytest.mark.parametrize("sigma", [None, 2.0])
def test_training_graph_matches_written_out_composition(adjacency: str, fusion, sigma) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 5, generator=g, dtype=torch.float64)
    y = (torch.rand(9, 3, generator=g) < 0.5).double()
    s_a = None if fusion is None else aux_similarity(y)
    mu = 1.0 if fusion is None else fusion
    weight = torch.randn(9, 9, generator=g, dtype=torch.float64)  # a generic upstream gradient
    xr = x.clone().requires_grad_(True)
    s_norm, s_v, s, sig = normalized_gaussian_graph(xr, s_a, mu, sigma, adjacency)
    (s_norm * weight).sum().backward()
    # Eq. (3), (5) and the normalisation, each by its own function
    xw = x.clone().requires_grad_(True)
    sig_w = default_sigma(x) if sigma is None else torch.tensor(sigma, dtype=x.dtype)
    s_v_w = gaussian_similarity(xw, sig_w)
    s_w = augmented_graph(s_v_w, s_a, mu, "visual" if s_a is None else "fused")
    s_norm_w = normalized_adjacency(s_w, adjacency)
    (s_norm_w * weight).sum().backward()
    assert torch.allclose(s_norm, s_norm_w, atol=1e-12)
    assert torch.allclose(s_v, s_v_w, atol=1e-12)
    assert torch.allclose(s, s_w, atol=1e-12)
    assert torch.allclose(sig.double(), sig_w.double(), atol=1e-12)
    assert torch.allclose(xr.grad, xw.grad, atol=1e-10)
    assert not s_v.requires_grad and not s.requires_grad and not sig.requires_grad


def test_training_graph_gradcheck() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    s_a = aux_similarity((torch.rand(6, 3, generator=g) < 0.5).double())
    for adjacency in ("sym", "row"):
        assert torch.autograd.gradcheck(
            lambda t, a=adjacency: normalized_gaussian_graph(t, s_a, 0.7, 1.5, a)[0], (x,))


def test_training_graph_sigma_rule_and_degenerate_inputs() -> None:
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])  # see test_default_sigma_rule
    _, s_v, _, sigma = normalized_gaussian_graph(x)
    assert sigma.item() == pytest.approx(math.sqrt(25 / (2 * math.log(4))), rel=1e-5)
    assert s_v[0, 1].item() == pytest.approx(0.25, rel=1e-4)
    s_norm, s_v, _, sigma = normalized_gaussian_graph(torch.zeros(4, 3))  # all equal: sigma 1
    assert sigma.item() == 1.0
    assert torch.equal(s_v, torch.ones(4, 4))
    assert torch.allclose(s_norm, torch.full((4, 4), 0.25))
    s_norm, _, _, _ = normalized_gaussian_graph(torch.ones(1, 3), adjacency="row")  # one node
    assert torch.equal(s_norm, torch.ones(1, 1))
