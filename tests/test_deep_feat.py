"""Tests of the feature-level variants of the paper's image-level deep baselines
(``deepbit_feat``, ``sadh_feat``): each loss and step on hand-computed values, the method
contract, determinism, and codes that beat random ones on clustered data (test_baselines' set,
10 clusters in 64-d, made non-negative like fc7 after its ReLU). Training is shrunk so the file
runs in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.deep import HashLayerNet, deepbit_feat, sadh_feat
from pipeline.methods import METHODS, check_params, get_method
from pipeline.retrieval.tables import DISPLAY
from tests.test_baselines import clustered, map_at_all

TINY = {"iterations": 300, "lr_step": 150}


@pytest.fixture(scope="module")
def data():
    (Xt, yt), (Xq, yq), (Xd, yd) = clustered()
    return ((np.abs(Xt[:400]), yt[:400]), (np.abs(Xq), yq), (np.abs(Xd[:800]), yd[:800]))


@pytest.fixture(scope="module")
def fitted(data):
    (Xt, _), _, _ = data
    return deepbit_feat.fit(Xt, None, 16, TINY, 5)


def test_quantization_loss_by_hand_and_its_gradient_holds_b_fixed():
    # b = [[1, 0], [0, 0]] (0.5 is not > 0.5); (0.2^2 + 0.1^2 + 0.4^2 + 0.5^2) / (2 * 2)
    h = torch.tensor([[0.8, 0.1], [0.4, 0.5]], requires_grad=True)
    loss = deepbit_feat.quantization_loss(h)
    assert loss.item() == pytest.approx(0.46 / 4)
    loss.backward()  # d/dh (b - h)^2 / (2m) = (h - b) / m with b fixed
    np.testing.assert_allclose(h.grad.numpy(), [[-0.1, 0.05], [0.2, 0.25]], atol=1e-6)
    three = torch.tensor([[1.0], [0.0], [0.75]])  # m = 3: (0 + 0 + 0.25^2) / 6
    assert deepbit_feat.quantization_loss(three).item() == pytest.approx(0.0625 / 6)


def test_even_distribution_loss_by_hand_hard_and_relaxed():
    h = torch.tensor([[0.8, 0.1], [0.4, 0.5]])
    # bits on: 1 of 2 and 0 of 2 -> ((1/2 - 1/2)^2 + (0 - 1/2)^2) / (2 * 2)
    assert deepbit_feat.even_distribution_loss(h).item() == pytest.approx(0.0625)
    # relaxed: column means 0.6, 0.3 -> (0.01 + 0.04) / 4
    assert deepbit_feat.even_distribution_loss(h, relaxed=True).item() == pytest.approx(0.0125)
    balanced = torch.tensor([[0.9, 0.2], [0.1, 0.7]])
    assert deepbit_feat.even_distribution_loss(balanced).item() == 0.0
    four = torch.tensor([[0.9], [0.8], [0.7], [0.1]])  # 3 of 4 on, m = 4: 0.25^2 / 8
    assert deepbit_feat.even_distribution_loss(four).item() == pytest.approx(0.0625 / 8)


def test_registered_labelled_and_checked_at_start_up():
    assert get_method("deepbit_feat") is deepbit_feat
    assert METHODS["deepbit_feat"] == "pipeline.deep.deepbit_feat"
    assert DISPLAY["deepbit_feat"] == "DeepBit (features, no rotation term)"
    check_params("deepbit_feat", TINY)
    with pytest.raises(ValueError, match=r"x\.methods\.r: .*deepbit_feat.*nope"):
        check_params("deepbit_feat", {"nope": 1}, where="x.methods.r")


@pytest.mark.parametrize("bad, match", [
    ({"lr": 0}, "lr must"), ({"batch_size": 1}, "batch_size must"),
    ({"dropout": 1.0}, "dropout must"), ({"iterations": 0}, "iterations must"),
    ({"hidden": 5}, "hidden must"), ({"balance_weight": -1}, "balance_weight must"),
])
def test_bad_values_are_refused_at_start_up(bad, match):
    with pytest.raises(ValueError, match=f"x: deepbit_feat: {match}"):
        check_params("deepbit_feat", bad, where="x")


def test_training_sharpens_the_outputs(fitted):
    hist = fitted["history"]
    assert hist[-1]["steps"] == TINY["iterations"]
    # measured: 1.85 on the first pass -> about 1.2 after 300 steps
    assert hist[-1]["quantization"] < 0.8 * hist[0]["quantization"]


def test_codes_shape_blocks_and_state_round_trip(fitted, data, tmp_path):
    _, (Xq, _), _ = data
    codes = deepbit_feat.encode(fitted, Xq, None, {})
    assert codes.shape == (len(Xq), 16) and codes.dtype == np.bool_
    assert 0.05 < codes.mean() < 0.95
    assert len(np.unique(codes, axis=0)) >= 10
    np.testing.assert_array_equal(deepbit_feat.encode(fitted, Xq, None, {"block_rows": 7}), codes)
    torch.save({"state": fitted}, tmp_path / "m.pt")
    loaded = torch.load(tmp_path / "m.pt", weights_only=False)["state"]
    np.testing.assert_array_equal(deepbit_feat.encode(loaded, Xq, None, {}), codes)
    with pytest.raises(ValueError, match="features but the model was fitted on 64"):
        deepbit_feat.encode(fitted, Xq[:, :10], None, {})
    with pytest.raises(ValueError, match="not 'deepbit_feat'"):
        deepbit_feat.encode({**fitted, "method": "itq"}, Xq, None, {})


def test_same_seed_same_codes_other_seed_other_codes_global_generator_untouched(fitted, data):
    (Xt, _), (Xq, _), _ = data
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    again = deepbit_feat.encode(deepbit_feat.fit(Xt, None, 16, TINY, 5), Xq, None, {})
    assert torch.equal(torch.rand(3), expected)  # neither fit nor encode drew from it
    np.testing.assert_array_equal(again, deepbit_feat.encode(fitted, Xq, None, {}))
    other = deepbit_feat.encode(deepbit_feat.fit(Xt, None, 16, TINY, 6), Xq, None, {})
    assert (other != again).any()


def test_codes_beat_random_codes(fitted, data):
    _, (Xq, yq), (Xd, yd) = data
    got = map_at_all(deepbit_feat.encode(fitted, Xq, None, {}),
                     deepbit_feat.encode(fitted, Xd, None, {}), yq, yd)
    rng = np.random.default_rng(0)
    floor = map_at_all(rng.random((len(Xq), 16)) > 0.5, rng.random((len(Xd), 16)) > 0.5, yq, yd)
    # measured: 0.43 against 0.10
    assert got > floor + 0.15, (got, floor)


# --- sadh_feat: SADH's modules on the features --------------------------------------------------

SADH_TINY = {"iterations": 300, "lr_step": 150, "anchors": 50, "rounds": 2}
F64 = torch.float64


@pytest.fixture(scope="module")
def sadh_fitted(data):
    (Xt, _), _, _ = data
    return sadh_feat.fit(Xt, None, 16, SADH_TINY, 5)


def test_sadh_kmeans_by_hand_and_empty_clusters_dropped():
    X = torch.tensor([[0.0], [1.0], [10.0], [11.0]], dtype=F64)
    for seed in range(5):  # any start of 2 distinct rows ends at the two groups' means
        torch.manual_seed(seed)
        assert sorted(sadh_feat.kmeans(X, 2, 5).flatten().tolist()) == [0.5, 10.5]
    # three starting rows of which two are equal: the second copy's cluster stays empty
    same = torch.tensor([[0.0], [0.0], [4.0]], dtype=F64)
    torch.manual_seed(0)
    got = sadh_feat.kmeans(same, 3, 3)
    assert sorted(got.flatten().tolist()) == [0.0, 4.0]


def test_sadh_anchor_graph_by_hand():
    X = torch.tensor([[1.0], [2.0], [6.0]], dtype=F64)
    a = torch.tensor([[0.0], [3.0], [7.0]], dtype=F64)
    # s = 2: image 1 -> anchors 0 (d2 1), 3 (d2 4); image 2 -> 3 (1), 0 (4); image 6 -> 7 (1),
    # 3 (9); sigma = mean(2, 2, 3) = 7/3; weights exp(-d2 / sigma^2) normalised per row
    Z = sadh_feat.anchor_graph(X, a, 2).numpy()
    s2 = (7 / 3) ** 2

    def pair(near, far):
        w = np.exp(-near / s2) / (np.exp(-near / s2) + np.exp(-far / s2))
        return w, 1 - w

    w1, v1 = pair(1, 4)
    w3, v3 = pair(1, 9)
    np.testing.assert_allclose(Z, [[w1, v1, 0], [v1, w1, 0], [0, v3, w3]], rtol=1e-12)


def test_sadh_graph_product_equals_the_dense_anchor_graph():
    Z = torch.tensor([[0.6, 0.4, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.3, 0.7, 0.0]],
                     dtype=F64)  # the last anchor links to no image: it adds nothing
    B = torch.tensor([[1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]], dtype=F64)
    mass = np.array([0.6, 1.7, 0.7])
    A = Z[:, :3].numpy() @ np.diag(1 / mass) @ Z[:, :3].numpy().T
    np.testing.assert_allclose(sadh_feat.graph_product(Z, B).numpy(), A @ B.numpy(), rtol=1e-12)
    # A's rows sum to 1: the constant vector is kept
    np.testing.assert_allclose(sadh_feat.graph_product(Z, torch.ones(3, 1, dtype=F64)).numpy(),
                               np.ones((3, 1)), rtol=1e-12)


def test_sadh_b_objective_by_hand_and_its_gradient_is_the_authors():
    Z = torch.ones(2, 1, dtype=F64)  # A = [[.5, .5], [.5, .5]]
    B = torch.tensor([[2.0], [1.0]], dtype=F64)
    C = torch.tensor([[1.0], [-3.0]], dtype=F64)
    rho = (0.5, 0.25, 0.1, 0.2)
    # (0.75 + 2) / 2 * 5 - tr(B'AB) (= 4.5) + (2 - 3) + 0.05 * 9 + 0.05 * (5 - 2)^2
    want = 2.75 / 2 * 5 - 4.5 - 1 + 0.45 + 0.45
    assert sadh_feat.b_objective(B, C, Z, rho).item() == pytest.approx(want)
    gen = torch.Generator().manual_seed(0)
    n, r, m = 7, 3, 4
    Zr = torch.rand(n, m, generator=gen, dtype=F64)
    Br = torch.randn(n, r, generator=gen, dtype=F64).requires_grad_(True)
    Cr = torch.randn(n, r, generator=gen, dtype=F64)
    sadh_feat.b_objective(Br, Cr, Zr, rho).backward()
    b = Br.detach()
    A = Zr @ torch.diag(1 / Zr.sum(0)) @ Zr.T
    ones = torch.ones(n, 1, dtype=F64)
    theirs = (2 * (b - A @ b) + Cr + (rho[0] + rho[1]) * b + rho[2] * ones @ (ones.T @ b)
              + rho[3] * b @ (b.T @ b - n * torch.eye(r, dtype=F64)))  # gradientB.m
    np.testing.assert_allclose(Br.grad.numpy(), theirs.numpy(), rtol=1e-10, atol=1e-10)


def test_sadh_projections_and_admm_loss_by_hand():
    assert sadh_feat.box_projection(torch.tensor([-2.0, 0.5, 3.0])).tolist() == [-1, 0.5, 1]
    got = sadh_feat.sphere_projection(torch.tensor([[3.0, 0.0], [0.0, 4.0]]))
    np.testing.assert_allclose(got.numpy(), [[1.2, 0.0], [0.0, 1.6]])  # norm 5 -> sqrt(4)
    Z = torch.ones(2, 1, dtype=F64)
    B = torch.tensor([[2.0], [0.0]], dtype=F64)
    Z1 = torch.tensor([[1.0], [0.0]], dtype=F64)
    Z2 = torch.tensor([[1.0], [1.0]], dtype=F64)
    Y1 = torch.tensor([[1.0], [1.0]], dtype=F64)
    Y2 = torch.tensor([[0.5], [2.0]], dtype=F64)
    # tr(B'B - B'AB) = 4 - 2; Y1'(B-Z1) = 1; Y2'(B-Z2) = 0.5 - 2; rho1/2 |B-Z1|^2 = 0.5;
    # rho2/2 |B-Z2|^2 = 1; rho3/2 (1'B)^2 = 2; rho4/4 (B'B - 2)^2 = 1  (all rho 1)
    assert sadh_feat.admm_loss(B, Z, Z1, Z2, Y1, Y2, (1, 1, 1, 1)) == pytest.approx(6.0)


def test_sadh_penalty_scale_and_euclidean_loss_by_hand():
    assert sadh_feat.penalty_scale(1000, 118000) == 118.0
    assert sadh_feat.penalty_scale(5000, None) == 1.0
    out = torch.tensor([[0.5, -1.0, 0.0], [1.0, 1.0, 1.0]])
    target = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, -1.0]])  # batch of 2, 3 bits
    assert sadh_feat.euclidean_loss(out, target).item() == pytest.approx((0.25 + 4 + 4) / 4)


def test_sadh_binary_codes_balanced_binary_and_stop_on_the_relative_change(data):
    (Xt, _), _, _ = data
    X = torch.from_numpy(Xt - Xt.mean(0)).double()
    torch.manual_seed(0)
    Z = sadh_feat.anchor_graph(X, sadh_feat.kmeans(X, 50, 10), 2)
    p = sadh_feat._params({})
    scale = sadh_feat.penalty_scale(len(X), p["penalty_n"])
    p = {**p, "rho3": p["rho3"] * scale, "rho4": p["rho4"] * scale}
    torch.manual_seed(1)
    B, losses = sadh_feat.binary_codes(Z, 8, p)
    assert set(B.unique().tolist()) == {-1.0, 1.0} and B.shape == (len(X), 8)
    # measured: 0.50 over all bits (0.37-0.61 per bit: the bits follow the 10 clusters)
    assert abs((B > 0).double().mean().item() - 0.5) < 0.05
    last = abs(losses[-1] - losses[-2]) / abs(losses[-2])
    assert len(losses) == p["admm_iters"] or last <= p["admm_tol"]
    torch.manual_seed(1)
    _, two = sadh_feat.binary_codes(Z, 8, {**p, "admm_tol": 1e9})
    assert len(two) == 2  # the first iteration has no previous loss to compare with
    torch.manual_seed(1)  # the values as written, at n = 400: the multipliers' pull wins
    unscaled, _ = sadh_feat.binary_codes(Z, 8, sadh_feat._params({}))
    assert (unscaled > 0).double().mean().item() < 0.35  # measured: 0.16


def test_sadh_registered_labelled_and_checked_at_start_up():
    assert get_method("sadh_feat") is sadh_feat
    assert METHODS["sadh_feat"] == "pipeline.deep.sadh_feat"
    assert DISPLAY["sadh_feat"] == "SADH (on features)"
    check_params("sadh_feat", SADH_TINY)
    check_params("sadh_feat", {"penalty_n": None})
    with pytest.raises(ValueError, match=r"x\.methods\.r: .*sadh_feat.*nope"):
        check_params("sadh_feat", {"nope": 1}, where="x.methods.r")


@pytest.mark.parametrize("bad, match", [
    ({"rho1": 0}, "rho1 must"), ({"rho3": -1}, "rho3 must"), ({"anchors": 0}, "anchors must"),
    ({"nearest": 3, "anchors": 2}, r"nearest \(3\) must be <= anchors \(2\)"),
    ({"penalty_n": 0}, "penalty_n must"), ({"rounds": 0}, "rounds must"),
    ({"batch_size": 1}, "batch_size must"), ({"dropout": 1.0}, "dropout must"),
])
def test_sadh_bad_values_are_refused_at_start_up(bad, match):
    with pytest.raises(ValueError, match=f"x: sadh_feat: {match}"):
        check_params("sadh_feat", bad, where="x")


def test_sadh_more_anchors_than_images_is_refused(data):
    (Xt, _), _, _ = data
    with pytest.raises(ValueError, match=r"anchors \(500\) must be <= the number of training "
                                         r"images \(40\); set methods.<row>.anchors lower"):
        sadh_feat.fit(Xt[:40], None, 8, {}, 0)


def test_sadh_training_fits_the_codes_and_threshold_is_the_training_mean(sadh_fitted, data):
    (Xt, _), _, _ = data
    hist = sadh_fitted["history"]
    assert [h["round"] for h in hist] == [1, 2]
    for h in hist:  # measured: 7.9-9.2 -> 6.4-6.5 per round
        assert h["last_pass"] < 0.9 * h["first_pass"]
        assert 0.4 < h["positive"] < 0.6
    assert sadh_fitted["rho3"] == pytest.approx(1e-3 * 118000 / len(Xt))
    net = HashLayerNet(64, [], 16, 0.5)
    net.load_state_dict(sadh_fitted["net"])
    net.eval()
    with torch.no_grad():
        out = net(torch.from_numpy(Xt.astype(np.float32))).double()
    assert sadh_fitted["threshold"] == pytest.approx(out.mean().item(), rel=1e-6)
    np.testing.assert_array_equal(sadh_feat.encode(sadh_fitted, Xt, None, {}),
                                  (out > sadh_fitted["threshold"]).numpy())


def test_sadh_codes_shape_blocks_and_state_round_trip(sadh_fitted, data, tmp_path):
    _, (Xq, _), _ = data
    codes = sadh_feat.encode(sadh_fitted, Xq, None, {})
    assert codes.shape == (len(Xq), 16) and codes.dtype == np.bool_
    np.testing.assert_array_equal(sadh_feat.encode(sadh_fitted, Xq, None, {"block_rows": 7}),
                                  codes)
    torch.save({"state": sadh_fitted}, tmp_path / "m.pt")
    loaded = torch.load(tmp_path / "m.pt", weights_only=False)["state"]
    np.testing.assert_array_equal(sadh_feat.encode(loaded, Xq, None, {}), codes)
    with pytest.raises(ValueError, match="features but the model was fitted on 64"):
        sadh_feat.encode(sadh_fitted, Xq[:, :10], None, {})
    with pytest.raises(ValueError, match="not 'sadh_feat'"):
        sadh_feat.encode({**sadh_fitted, "method": "itq"}, Xq, None, {})


def test_sadh_same_seed_same_codes_other_seed_other_codes_generator_untouched(sadh_fitted, data):
    (Xt, _), (Xq, _), _ = data
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    again = sadh_feat.encode(sadh_feat.fit(Xt, None, 16, SADH_TINY, 5), Xq, None, {})
    assert torch.equal(torch.rand(3), expected)  # neither fit nor encode drew from it
    np.testing.assert_array_equal(again, sadh_feat.encode(sadh_fitted, Xq, None, {}))
    other = sadh_feat.encode(sadh_feat.fit(Xt, None, 16, SADH_TINY, 6), Xq, None, {})
    assert (other != again).any()


def test_sadh_codes_beat_random_codes(sadh_fitted, data):
    _, (Xq, yq), (Xd, yd) = data
    got = map_at_all(sadh_feat.encode(sadh_fitted, Xq, None, {}),
                     sadh_feat.encode(sadh_fitted, Xd, None, {}), yq, yd)
    rng = np.random.default_rng(0)
    floor = map_at_all(rng.random((len(Xq), 16)) > 0.5, rng.random((len(Xd), 16)) > 0.5, yq, yd)
    # measured: 0.54 against 0.11
    assert got > floor + 0.2, (got, floor)
