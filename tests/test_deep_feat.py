"""Tests of the feature-level variants of the paper's image-level deep baselines
(``deepbit_feat``): each loss on hand-computed values, the method contract, determinism, and
codes that beat random ones on clustered data (test_baselines' set, 10 clusters in 64-d, made
non-negative like fc7 after its ReLU). Training is shrunk so the file runs in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.deep import deepbit_feat
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
