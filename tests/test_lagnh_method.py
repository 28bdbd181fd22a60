"""LAGNH fit/encode: training loop, reproducibility, both encodings, input validation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from pipeline.lagnh import method, model
from pipeline.lagnh.encoding import (
    batch_scale,
    build_reference,
    encode_batchwise,
    encode_inductive,
)
from pipeline.lagnh.model import build_models, resolve_options
from pipeline.lagnh.training import HISTORY_TERMS, train_step
from pipeline.methods import get_method

N, D, C = 40, 16, 4
TINY = {"d_att": 8, "hidden": 16, "epochs": 2, "batch_size": 16, "encode_batch_size": 4,
        "encode_neighbors": 5}


def _data(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, C)) < 0.4).astype(np.uint8)
    x = (y @ rng.normal(size=(C, D)) + 0.5 * rng.normal(size=(n, D))).astype(np.float32)
    return x, y


@pytest.fixture(scope="module")
def trained() -> dict:
    x, y = _data()
    return method.fit(x, y, 16, TINY, seed=3)


def test_registered_in_pipeline() -> None:
    assert get_method("lagnh") is method


def test_state_and_history(trained: dict) -> None:
    assert trained["bits"] == 16 and trained["in_features"] == D and trained["n_classes"] == C
    assert trained["reference"]["xbar"].shape == (N, 8)
    assert trained["reference"]["y"].dtype == torch.uint8
    hist = trained["history"]
    assert [row["epoch"] for row in hist] == [1, 2]
    for row in hist:
        assert set(row) == {"epoch", "seconds", *HISTORY_TERMS}
        assert all(np.isfinite(v) for v in row.values())
    assert hist[0]["loss_cl"] > 0


def test_one_step_updates_discriminator_and_generator() -> None:
    opts = resolve_options({**TINY})
    torch.manual_seed(0)
    gen, disc = build_models(D, C, 16, opts)
    opt_g = torch.optim.Adam(gen.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-3)
    g0, d0 = copy.deepcopy(gen.state_dict()), copy.deepcopy(disc.state_dict())
    x, y = (torch.from_numpy(a).float() for a in _data(8))
    terms = train_step(gen, disc, opt_g, opt_d, x, y)
    assert set(terms) == {"total", "gan_g", "gan_d", "recons", "quan", "cl", "sigma"}
    for name, value in gen.state_dict().items():
        assert not torch.equal(value, g0[name]), f"generator {name} did not change"
    for name, value in disc.state_dict().items():
        assert not torch.equal(value, d0[name]), f"discriminator {name} did not change"


def test_seeded_fit_is_bit_identical_on_cpu(trained: dict) -> None:
    x, y = _data()
    again = method.fit(x, y, 16, TINY, seed=3)
    for part in ("generator", "discriminator"):
        for name, value in trained[part].items():
            assert torch.equal(value, again[part][name]), name
    assert torch.equal(trained["reference"]["xbar"], again["reference"]["xbar"])
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in trained["history"]]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in again["history"]]
    other = method.fit(x, y, 16, TINY, seed=4)
    assert not torch.equal(other["generator"]["gcn.conv1.lin.weight"],
                           trained["generator"]["gcn.conv1.lin.weight"])


def test_fit_leaves_global_rng_alone() -> None:
    x, y = _data(16)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    method.fit(x, y, 8, {**TINY, "epochs": 1}, seed=0)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("bits", [16, 32, 64, 128])
def test_encode_shapes(bits: int) -> None:
    x, y = _data(20)
    state = method.fit(x, y, bits, {**TINY, "epochs": 1}, seed=0)
    for mode in ("inductive", "batch"):
        codes = method.encode(state, x[:7], y[:7], {**TINY, "encode_mode": mode})
        assert codes.shape == (7, bits) and codes.dtype == bool
    assert method.encode(state, x[:0], y[:0], TINY).shape == (0, bits)


@pytest.mark.parametrize("neighbors", [5, None, 0])
def test_inductive_code_independent_of_batch(trained: dict, neighbors: int | None) -> None:
    xq, yq = _data(12, seed=9)
    params = {**TINY, "encode_neighbors": neighbors}
    alone = method.encode(trained, xq[5:6], yq[5:6], params)
    batch_a = method.encode(trained, xq, yq, params)  # image 5 in the 2nd block of 4
    order = [7, 5, 1, 11, 0, 2]
    batch_b = method.encode(trained, xq[order], yq[order], params)  # 1st block, 2nd row
    assert np.array_equal(alone[0], batch_a[5])
    assert np.array_equal(alone[0], batch_b[1])
    # bit-identical outputs, not only identical signs
    opts = method.encode_options(trained, params)
    gen = method.load_generator(trained, opts)
    ref = build_reference(gen, trained["reference"]["xbar"], trained["reference"]["y"],
                          neighbors, block=4)
    z_alone = encode_inductive(gen, ref, xq[5:6], yq[5:6], block=4)
    z_all = encode_inductive(gen, ref, xq, yq, block=4)
    assert torch.equal(z_alone[0], z_all[5])


def _dense_inductive_reference(gen, xbar_ref, y_ref, xq, yq, sigma) -> torch.Tensor:
    """The inductive encoding written out for K = all, one query at a time (test oracle)."""
    o = gen.opts
    att = gen.attention
    ybar_ref = att.lin_y(y_ref)
    with torch.no_grad():
        def attend(xbar, extra_y=None):
            from pipeline.lagnh.attention import cross_modal_attention
            ybar = ybar_ref if extra_y is None else torch.cat([ybar_ref, att.lin_y(extra_y)])
            return cross_modal_attention(xbar, ybar, o.attention_norm)

        xr = attend(xbar_ref)
        dist = torch.cdist(xr.double(), xr.double())
        s_rr = torch.exp(-dist.square() / (2 * sigma**2)) + y_ref.double() @ y_ref.double().T
        deg_r = s_rr.sum(1)
        s_norm = s_rr / torch.sqrt(deg_r[:, None] * deg_r[None, :])
        w1, b1 = gen.gcn.conv1.weight.double(), gen.gcn.conv1.bias.double()
        w2, b2 = gen.gcn.conv2.weight.double(), gen.gcn.conv2.bias.double()
        h_r = torch.relu(s_norm @ xr.double() @ w1.T + b1)
        out = []
        for i in range(xq.shape[0]):
            xa = attend(att.lin_x(xq[i:i + 1]), yq[i:i + 1]).double()
            s_q = torch.exp(-torch.cdist(xa, xr.double()).square() / (2 * sigma**2)) \
                + yq[i:i + 1].double() @ y_ref.double().T
            s_qq = 1.0 + yq[i].double().square().sum()
            d_q = s_qq + s_q.sum()
            w_q = s_q / torch.sqrt(d_q * deg_r[None, :])
            h_q = torch.relu((s_qq / d_q) * xa @ w1.T + w_q @ xr.double() @ w1.T + b1)
            out.append((s_qq / d_q) * h_q @ w2.T + w_q @ h_r @ w2.T + b2)
        return torch.cat(out).float()


def test_inductive_matches_written_out_formula(trained: dict) -> None:
    xq, yq = _data(3, seed=5)
    opts = method.encode_options(trained, {"encode_neighbors": None})
    gen = method.load_generator(trained, opts)
    ref = build_reference(gen, trained["reference"]["xbar"], trained["reference"]["y"], None, 4)
    z = encode_inductive(gen, ref, xq, yq, block=4)
    oracle = _dense_inductive_reference(
        gen, trained["reference"]["xbar"], trained["reference"]["y"].float(),
        torch.from_numpy(xq), torch.from_numpy(yq).float(), opts.sigma)
    assert opts.sigma == trained["sigma"] and trained["sigma"] > 0  # the training bandwidth
    assert torch.allclose(z, oracle, atol=1e-4, rtol=1e-4)


def test_batch_scale_matches_a_training_batch_row() -> None:
    """A reference row over all m images, scaled by batch_scale, has the degree and self weight
    a training batch of B images gives the same image on average (Monte Carlo over batches
    built by the training code itself)."""
    m, batch = 40, 10
    x, y = _data(m, seed=4)
    opts = resolve_options({**TINY, "sigma": 2.0, "ablation": "no-att", "encode_neighbors": None})
    torch.manual_seed(0)
    gen, _ = build_models(D, C, 16, opts)
    gen.eval()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).float()
    with torch.no_grad():
        xbar = gen.attention.project(xt)
        ref = build_reference(gen, xbar, yt, None, block=8, scale=batch_scale(batch, m))
        gen_deg = torch.zeros(m, dtype=torch.float64)
        gen_self = torch.zeros(m, dtype=torch.float64)
        seen = torch.zeros(m, dtype=torch.float64)
        rng = torch.Generator().manual_seed(1)
        for _ in range(3000):
            idx = torch.randperm(m, generator=rng)[:batch]
            s = gen.build_graph(xbar[idx], yt[idx]).s.double()
            deg = s.sum(dim=1)
            gen_deg[idx] += deg
            gen_self[idx] += s.diagonal() / deg
            seen[idx] += 1
    batch_deg, batch_self = gen_deg / seen, gen_self / seen
    ref_self = (1.0 + yt.square().sum(dim=1)).double() / ref.degree.double()
    assert torch.allclose(ref.degree.double(), batch_deg, rtol=0.03)
    assert torch.allclose(ref_self, batch_self, rtol=0.05)
    # unscaled rows over all 40 images have about four times a batch's neighbour weight
    unscaled = build_reference(gen, xbar, yt, None, block=8, scale=1.0)
    assert (unscaled.degree.double() > 1.5 * batch_deg).all()


def test_batch_mode_runs_and_depends_on_batch(trained: dict) -> None:
    xq, yq = _data(12, seed=9)
    codes = method.encode(trained, xq, yq, {**TINY, "encode_mode": "batch"})
    assert codes.shape == (12, 16)
    gen = method.load_generator(trained, method.encode_options(trained, TINY))
    z_a = encode_batchwise(gen, xq[:4], yq[:4], batch_size=4)
    z_b = encode_batchwise(gen, xq[[0, 8, 9, 10]], yq[[0, 8, 9, 10]], batch_size=4)
    assert not torch.allclose(z_a[0], z_b[0])  # same image, different batch-mates


def test_state_of_an_earlier_version_with_kernels_key_still_encodes(trained: dict) -> None:
    # states written while C kernels existed carry "kernels": "C" | "torch"; it is ignored
    assert "kernels" not in trained
    xq, yq = _data(12, seed=9)
    old = {**trained, "kernels": "C"}
    for mode in ("inductive", "batch"):
        params = {**TINY, "encode_mode": mode}
        assert np.array_equal(method.encode(old, xq, yq, params),
                              method.encode(trained, xq, yq, params))


def test_all_zero_label_row(trained: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    # the authors' variant fixes sizes and epochs (300 epochs at width 1024: ~20 s); shrink them
    for key in ("d_att", "hidden", "batch_size", "encode_batch_size"):
        monkeypatch.setitem(model.AUTHORS_PARAMS, key, TINY[key])
    monkeypatch.setitem(model.AUTHORS_PARAMS, "epochs", 1)
    x, y = _data()
    y[[0, 7]] = 0
    for params in (TINY, {**TINY, "ablation": "only-Sa"}, {**TINY, "variant": "authors"}):
        state = method.fit(x, y, 16, {**params, "epochs": 1}, seed=0)
        assert all(np.isfinite(v) for row in state["history"] for v in row.values())
        for mode in ("inductive", "batch"):
            codes = method.encode(state, x[:6], y[:6], {**params, "encode_mode": mode})
            assert codes.shape == (6, 16)


def test_no_aux_needs_no_labels() -> None:
    x, _ = _data(20)
    params = {**TINY, "ablation": "no-aux", "epochs": 1}
    state = method.fit(x, None, 16, params, seed=0)
    assert state["reference"]["y"] is None
    assert method.encode(state, x[:5], None, params).shape == (5, 16)


def test_validation_errors(trained: dict) -> None:
    x, y = _data()
    with pytest.raises(ValueError, match="same number of rows"):
        method.fit(x, y[:-1], 16, TINY, seed=0)
    for bits in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="bits must be an integer >= 1"):
            method.fit(x, y, bits, TINY, seed=0)
    with pytest.raises(ValueError, match="valid values: paper, authors"):
        method.fit(x, y, 16, {**TINY, "variant": "pytorch"}, seed=0)
    with pytest.raises(ValueError, match="valid values: none, no-aux"):
        method.fit(x, y, 16, {**TINY, "ablation": "no-attention"}, seed=0)
    with pytest.raises(ValueError, match="2-D"):
        method.fit(x[0], y, 16, TINY, seed=0)
    with pytest.raises(ValueError, match="NaN"):
        method.fit(np.full_like(x, np.nan), y, 16, TINY, seed=0)
    with pytest.raises(ValueError, match="labels Y are required"):
        method.fit(x, None, 16, TINY, seed=0)
    with pytest.raises(ValueError, match="same number of rows"):
        method.encode(trained, x[:5], y[:4], TINY)
    with pytest.raises(ValueError, match="trained with 16"):
        method.encode(trained, x[:5, :8], y[:5], TINY)
    with pytest.raises(ValueError, match="trained with 4"):
        method.encode(trained, x[:5], y[:5, :3], TINY)
    with pytest.raises(ValueError, match="valid values: inductive, batch"):
        method.encode(trained, x[:5], y[:5], {"encode_mode": "transductive"})
    with pytest.raises(ValueError, match="not a LAGNH state"):
        method.encode({"bits": 16}, x[:5], y[:5], TINY)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_and_encode() -> None:
    x, y = _data()
    params = {**TINY, "device": "cuda"}
    state = method.fit(x, y, 16, params, seed=0)
    codes = method.encode(state, x, y, params)
    cpu = method.encode(state, x, y, {**params, "device": "cpu"})
    assert codes.shape == (N, 16)
    assert (codes == cpu).mean() > 0.95
