"""Guards against deliberate breakages that once passed every other test.

Each test names the breakage it catches: Xavier init (authors' GCN), the label sense of Eq. (11),
``g_steps``, dropout only while training, sgn(0) = -1 at encoding (Eq. 13), the K *nearest*
neighbours of the inductive encoding and the Gaussian prior of Eq. (10).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor

from pipeline.lagnh import method
from pipeline.lagnh.encoding import _Rows, hash_codes
from pipeline.lagnh.gcn import GCN, GraphConv
from pipeline.lagnh.losses import classification_loss
from pipeline.lagnh.model import build_models, resolve_options
from pipeline.lagnh.training import train_step

D, C = 16, 4
TINY = {"d_att": 8, "hidden": 16, "epochs": 1, "batch_size": 16, "encode_batch_size": 4,
        "encode_neighbors": 5}


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, C)) < 0.4).astype(np.uint8)
    x = (y @ rng.normal(size=(C, D)) + 0.5 * rng.normal(size=(n, D))).astype(np.float32)
    return x, y


def _check_xavier_uniform(weight: Tensor) -> None:
    """U(-a, a), a = sqrt(6 / (fan_in + fan_out)): variance a^2 / 3 = 2 / (fan_in + fan_out)."""
    fan_out, fan_in = weight.shape
    w = weight.detach().double()
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    assert w.abs().max().item() <= bound  # uniform, not Gaussian
    assert w.abs().max().item() > 0.95 * bound  # and over the whole range
    # nn.Linear's default, U(+-1/sqrt(fan_in)), has variance 1/(3 fan_in): 3-4x smaller here
    assert w.var().item() == pytest.approx(2.0 / (fan_in + fan_out), rel=0.05)
    assert abs(w.mean().item()) < 0.05 * bound


# --- 1. Xavier-uniform weights (authors' GCN) -----------------------------------------------

def test_xavier_init_bound_and_variance() -> None:
    torch.manual_seed(0)
    _check_xavier_uniform(GraphConv(512, 256, init="xavier").weight)
    gcn = GCN(512, 1024, 64, init="xavier", bias=False)
    _check_xavier_uniform(gcn.conv1.weight)
    _check_xavier_uniform(gcn.conv2.weight)
    conv = GraphConv(512, 256, bias=True, init="xavier")
    assert conv.bias is not None and torch.equal(conv.bias, torch.zeros(256))


def test_authors_variant_generator_is_xavier_initialised() -> None:
    torch.manual_seed(0)
    gen, _ = build_models(D, C, 64, resolve_options({"variant": "authors"}))
    assert gen.gcn.conv1.bias is None and gen.gcn.conv2.bias is None
    _check_xavier_uniform(gen.gcn.conv1.weight)  # 512 -> 1024
    _check_xavier_uniform(gen.gcn.conv2.weight)  # 1024 -> 64


# --- 2. Eq. (11): label 1 pulls delta(f(z)) to 1, label 0 to 0 -------------------------------

@pytest.mark.parametrize("kind", ["bce", "soft_margin"])
def test_classification_loss_hand_example_nonzero_logits(kind: str) -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # -log sigma(l) = log(1 + e^-l) for y = 1;  -log(1 - sigma(l)) = log(1 + e^l) for y = 0
    terms = [math.log1p(math.exp(-2.0)), math.log1p(math.exp(-1.0)),
             math.log1p(math.exp(0.5)), math.log1p(math.exp(-3.0))]
    expected = sum(terms) / 4  # 0.3049; with the labels flipped: 2.2299
    assert classification_loss(logits, y, kind).item() == pytest.approx(expected, rel=1e-6)
    assert classification_loss(logits, 1 - y, kind).item() == pytest.approx(
        (math.log1p(math.exp(2.0)) + math.log1p(math.exp(1.0)) + math.log1p(math.exp(-0.5))
         + math.log1p(math.exp(3.0))) / 4, rel=1e-6)


# --- 3. g_steps generator steps per discriminator step ---------------------------------------

@pytest.mark.parametrize("g_steps", [1, 5])
def test_train_step_takes_g_steps_generator_steps(g_steps: int) -> None:
    opts = resolve_options({**TINY, "g_steps": g_steps})
    torch.manual_seed(0)
    gen, disc = build_models(D, C, 16, opts)
    opt_g = torch.optim.Adam(gen.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-3)
    counts = {"g_step": 0, "d_step": 0, "g_forward": 0}

    def counting(opt: torch.optim.Optimizer, key: str) -> None:
        step = opt.step

        def wrapped(*args: object, **kwargs: object) -> object:
            counts[key] += 1
            return step(*args, **kwargs)

        opt.step = wrapped  # type: ignore[method-assign]

    counting(opt_g, "g_step")
    counting(opt_d, "d_step")
    gen.register_forward_hook(lambda *_: counts.__setitem__("g_forward",
                                                            counts["g_forward"] + 1))
    x, y = (torch.from_numpy(a).float() for a in _data(8))
    train_step(gen, disc, opt_g, opt_d, x, y)
    # the first generator step reuses the discriminator's forward pass; each further recomputes
    assert counts == {"g_step": g_steps, "d_step": 1, "g_forward": g_steps}


# --- 4. dropout in train mode only ----------------------------------------------------------

def test_gcn_dropout_only_in_train_mode() -> None:
    torch.manual_seed(0)
    gcn = GCN(6, 32, 8, dropout=0.5)
    plain = GCN(6, 32, 8, dropout=0.0)
    plain.load_state_dict(gcn.state_dict())
    x, s = torch.rand(5, 6) + 0.5, torch.full((5, 5), 0.2)
    expected = plain.eval()(x, s)
    gcn.train()
    a, b = gcn(x, s), gcn(x, s)
    assert not torch.allclose(a, b)  # two training passes drop different units
    assert not torch.allclose(a, expected)
    gcn.eval()
    assert torch.equal(gcn(x, s), gcn(x, s))
    assert torch.allclose(gcn(x, s), expected, atol=1e-6)


def test_gcn_dropout_zeroes_and_rescales_the_layer_inputs() -> None:
    # identity graph and weights: layer 1 returns its (dropped-out) input, which is positive
    gcn = GCN(64, 64, 64, dropout=0.5, bias=False)
    with torch.no_grad():
        gcn.conv1.weight.copy_(torch.eye(64))
        gcn.conv2.weight.copy_(torch.eye(64))
    x, s = torch.rand(4, 64) + 0.5, torch.eye(4)
    torch.manual_seed(0)
    gcn.train()
    for out in (gcn.layer1(x, s), gcn.layer2(x, s)):
        kept = out != 0
        assert 0.25 < kept.float().mean().item() < 0.75
        assert torch.allclose(out[kept], 2 * x[kept])  # kept units scaled by 1 / (1 - p)
    gcn.eval()
    assert torch.equal(gcn.layer1(x, s), x) and torch.equal(gcn.layer2(x, s), x)


def test_authors_generator_dropout_follows_the_mode() -> None:
    torch.manual_seed(0)
    gen, _ = build_models(D, C, 16, resolve_options({"variant": "authors"}))
    x, y = (torch.from_numpy(a).float() for a in _data(8))
    gen.train()
    assert not torch.allclose(gen(x, y).z, gen(x, y).z)
    gen.eval()
    assert torch.equal(gen(x, y).z, gen(x, y).z)


# --- 5. Eq. (13): sgn(0) = -1 when encoding --------------------------------------------------

def test_hash_codes_zero_is_minus_one() -> None:
    z = torch.tensor([[0.0, -0.0, 1e-30, -1e-30, 2.0]])
    assert hash_codes(z).tolist() == [[False, False, True, False, True]]


@pytest.fixture(scope="module")
def zero_output_state() -> dict:
    """A trained tiny state whose last GCN layer is zero: every z is exactly 0."""
    x, y = _data(24)
    state = method.fit(x, y, 16, TINY, seed=0)
    state["generator"]["gcn.conv2.lin.weight"].zero_()
    state["generator"]["gcn.conv2.lin.bias"].zero_()
    return state


@pytest.mark.parametrize("mode", ["batch", "inductive"])
def test_encode_maps_zero_outputs_to_minus_one(zero_output_state: dict, mode: str) -> None:
    x, y = _data(6, seed=1)
    codes = method.encode(zero_output_state, x, y, {"encode_mode": mode})
    assert codes.shape == (6, 16) and codes.dtype == bool
    assert not codes.any()


# --- 6. inductive encoding: the K *nearest* reference images ---------------------------------

def test_rows_select_the_k_nearest_reference_images() -> None:
    torch.manual_seed(0)
    gen, _ = build_models(D, C, 16, resolve_options(TINY))
    # reference points on a line (2-D), distances from the query q = (2.2, 0):
    # 2.2, 1.2, 0.8, 3.8, 7.8 -> nearest first: 2, 1, 0, 3, 4
    ref = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [6.0, 0.0], [10.0, 0.0]])
    q = torch.tensor([[2.2, 0.0], [9.0, 0.0]])  # second: 9, 8, 6, 3, 1 -> 4, 3, 2, 1, 0
    sq_norm = ref.square().sum(dim=1)
    for k, nearest in ((1, [[2], [4]]), (2, [[1, 2], [3, 4]]), (3, [[0, 1, 2], [2, 3, 4]])):
        rows = _Rows(gen, q, None, ref, sq_norm, None, 1.0, k, None)
        assert rows.idx is not None
        assert [sorted(r) for r in rows.idx.tolist()] == nearest, k
    # reference rows exclude the node itself: node 1 (x = 1) -> others at 1, 2, 5, 9
    rows = _Rows(gen, ref[[1, 3]], None, ref, sq_norm, None, 1.0, 2, torch.tensor([1, 3]))
    assert rows.idx is not None
    assert [sorted(r) for r in rows.idx.tolist()] == [[0, 2], [2, 4]]


# --- 7. Eq. (10): real samples of the discriminator from N(0, I) ------------------------------

def test_discriminator_real_samples_are_standard_normal() -> None:
    n, bits = 256, 64
    opts = resolve_options({**TINY, "batch_size": n})
    torch.manual_seed(0)
    gen, disc = build_models(D, C, bits, opts)
    opt_g = torch.optim.Adam(gen.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-3)
    seen: list[Tensor] = []
    disc.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    x, y = (torch.from_numpy(a).float() for a in _data(n))
    z = gen(x, y).z.detach()
    train_step(gen, disc, opt_g, opt_d, x, y)
    # the discriminator step sees the prior samples and the generated codes (in either order)
    d_input = seen[0]
    assert d_input.shape == (2 * n, bits)
    fake_first = torch.allclose(d_input[:n], z, atol=1e-5)
    prior = d_input[n:] if fake_first else d_input[:n]
    assert not torch.allclose(prior, z, atol=1e-3)
    assert prior.min() < -1.0 and prior.max() > 1.0  # not U[0, 1), not bounded by 1
    assert abs(prior.mean().item()) < 0.05
    assert prior.std().item() == pytest.approx(1.0, abs=0.05)
    # Gaussian mass within 1 and 2 standard deviations: 68.3% and 95.4%
    assert (prior.abs() < 1).float().mean().item() == pytest.approx(0.683, abs=0.02)
    assert (prior.abs() < 2).float().mean().item() == pytest.approx(0.954, abs=0.01)
