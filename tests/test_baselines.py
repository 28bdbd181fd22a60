"""Tests of the shallow hashing baselines (pipeline/baselines): contract, determinism, quality.

Quality is checked on a small clustered data set (10 Gaussian clusters in 64-d; 1,000 train,
200 query, 2,000 database; label = cluster id) against a reference MAP@all written here with
numpy (Hamming ranking with a stable argsort, relevance = same cluster).
"""

from __future__ import annotations

import doctest
import importlib
import io
from types import ModuleType

import numpy as np
import pytest
import torch

from pipeline.methods import METHODS, get_method

ALL = ["lsh", "sklsh", "sh", "pcah", "itq", "sgh", "random"]
SEEDED = ["lsh", "sklsh", "itq", "sgh", "random"]  # use the seed
DETERMINISTIC = ["sh", "pcah"]  # ignore the seed
NEEDS_BITS_LE_D = ["sh", "pcah", "itq"]
BITS = [16, 32, 64]


def module(name: str) -> ModuleType:
    return importlib.import_module(f"pipeline.baselines.{name}")


def clustered(seed: int = 0, d: int = 64, k: int = 10, spread: float = 1.0):
    """10 Gaussian clusters: centres ~ N(0, spread^2 I), unit isotropic noise around them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, spread, (k, d))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, k, n)
        return (centres[y] + rng.normal(0.0, 1.0, (n, d))).astype(np.float32), y

    return draw(1000), draw(200), draw(2000)


@pytest.fixture(scope="module")
def data():
    return clustered()


def map_at_all(q_codes: np.ndarray, db_codes: np.ndarray, q_y: np.ndarray, db_y: np.ndarray):
    """Reference MAP over the full ranking; queries without relevant items are skipped."""
    q = q_codes.astype(np.int64)
    db = db_codes.astype(np.int64)
    hamming = q @ (1 - db).T + (1 - q) @ db.T
    aps = []
    for i in range(len(q)):
        relevant = db_y[np.argsort(hamming[i], kind="stable")] == q_y[i]
        if not relevant.any():
            continue
        ranks = np.flatnonzero(relevant) + 1
        aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
    return float(np.mean(aps))


def test_reference_map_by_hand():
    # ranking by distance [0, 1, 2]: relevant at ranks 1 and 3 -> AP = (1/1 + 2/3) / 2
    q = np.array([[False, False]])
    db = np.array([[False, False], [True, False], [True, True]])
    assert map_at_all(q, db, np.array([1]), np.array([1, 0, 1])) == pytest.approx(5 / 6)


def test_registry_points_here():
    for name in ["lsh", "sklsh", "sh", "pcah", "itq", "sgh"]:
        assert METHODS[name] == f"pipeline.baselines.{name}"
        assert get_method(name) is module(name)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bits", BITS)
def test_shapes_and_dtype(data, name, bits):
    (Xt, yt), (Xq, _), _ = data
    mod = module(name)
    state = mod.fit(Xt, yt, bits, {}, 0)
    codes = mod.encode(state, Xq, None, {})
    assert codes.shape == (200, bits)
    assert codes.dtype == np.bool_
    assert mod.encode(state, Xq[:0], None, {}).shape == (0, bits)
    assert 0.05 < codes.mean() < 0.95  # no degenerate constant code


@pytest.mark.parametrize("name", ALL)
def test_block_encoding_matches_whole(data, name):
    (Xt, _), _, (Xd, _) = data
    mod = module(name)
    state = mod.fit(Xt, None, 32, {}, 3)
    np.testing.assert_array_equal(
        mod.encode(state, Xd, None, {"block_rows": 37}), mod.encode(state, Xd, None, {})
    )


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_codes(data, name):
    (Xt, _), (Xq, _), _ = data
    mod = module(name)
    a = mod.encode(mod.fit(Xt, None, 32, {}, 7), Xq, None, {})
    b = mod.encode(mod.fit(Xt, None, 32, {}, 7), Xq, None, {})
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", SEEDED)
def test_different_seed_different_codes(data, name):
    (Xt, _), (Xq, _), _ = data
    mod = module(name)
    a = mod.encode(mod.fit(Xt, None, 32, {}, 1), Xq, None, {})
    b = mod.encode(mod.fit(Xt, None, 32, {}, 2), Xq, None, {})
    assert (a != b).any()


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_seed_free_methods_ignore_seed(data, name):
    (Xt, _), (Xq, _), _ = data
    mod = module(name)
    a = mod.encode(mod.fit(Xt, None, 32, {}, 1), Xq, None, {})
    b = mod.encode(mod.fit(Xt, None, 32, {}, 2), Xq, None, {})
    np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def maps(data):
    (Xt, yt), (Xq, yq), (Xd, yd) = data
    out = {}
    for name in ALL:
        mod = module(name)
        for bits in BITS:
            state = mod.fit(Xt, yt, bits, {}, 0)
            q = mod.encode(state, Xq, None, {})
            db = mod.encode(state, Xd, None, {})
            out[name, bits] = map_at_all(q, db, yq, yd)
    return out


def test_random_codes_are_at_chance(maps):
    for bits in BITS:
        assert 0.07 < maps["random", bits] < 0.14  # 10 balanced clusters -> about 0.1


@pytest.mark.parametrize("name", [m for m in ALL if m != "random"])
@pytest.mark.parametrize("bits", BITS)
def test_map_beats_random_codes(maps, name, bits):
    assert maps[name, bits] > maps["random", bits] + 0.1, maps


def test_learned_methods_are_strong_on_clusters(maps):
    # ITQ and SGH recover clusters almost perfectly on this easy data
    for bits in BITS:
        assert maps["itq", bits] > 0.9
        assert maps["sgh", bits] > 0.9


def test_itq_loss_non_increasing_and_rotation_orthogonal(data):
    from pipeline.baselines import itq

    (Xt, _), _, _ = data
    state = itq.fit(Xt, None, 32, {}, 0)
    history = state["history"]
    assert [h["iter"] for h in history] == list(range(51))
    losses = np.array([h["quantization_loss"] for h in history])
    assert np.all(np.diff(losses) <= 1e-9 * losses[0])
    assert losses[-1] < losses[0]
    R = state["rotation"]
    np.testing.assert_allclose(R.T @ R, np.eye(32), atol=1e-10)
    np.testing.assert_allclose(R @ R.T, np.eye(32), atol=1e-10)
    np.testing.assert_allclose(state["projection"], state["pca"] @ R, atol=1e-12)


def test_itq_iterations_param_and_loss_definition(data):
    from pipeline.baselines import itq

    (Xt, _), _, _ = data
    state = itq.fit(Xt, None, 16, {"iterations": 5}, 0)
    assert len(state["history"]) == 6 and state["iterations"] == 5
    assert len(itq.fit(Xt, None, 16, {"iterations": 0}, 0)["history"]) == 1

    # one iteration recomputed independently: quantization loss and the Procrustes solution
    one = itq.fit(Xt, None, 16, {"iterations": 1}, 0)
    X = Xt.astype(np.float64)
    V = (X - X.mean(axis=0)) @ one["pca"]
    R0 = itq.random_rotation(16, np.random.default_rng(0))
    B0 = np.where(V @ R0 > 0, 1.0, -1.0)
    U, _, Vh = np.linalg.svd(V.T @ B0)  # argmin_R ||V R - B0|| over orthogonal R = U Vh
    np.testing.assert_allclose(one["rotation"], U @ Vh, atol=1e-9)
    losses = [h["quantization_loss"] for h in one["history"]]
    assert losses[0] == pytest.approx(np.sum((B0 - V @ R0) ** 2), rel=1e-9)
    assert losses[1] == pytest.approx(np.sum((B0 - V @ U @ Vh) ** 2), rel=1e-9)


def test_pcah_equals_independent_pca_sign(data):
    from pipeline.baselines import pcah

    (Xt, _), (Xq, _), _ = data
    bits = 16
    state = pcah.fit(Xt, None, bits, {}, 0)
    X = Xt.astype(np.float64)
    mu = X.mean(axis=0)
    _, _, Vt = np.linalg.svd(X - mu, full_matrices=False)  # independent: SVD, not cov eig
    W = Vt[:bits].T
    # same sign convention as the implementation: largest-|.| entry of each direction positive
    W = W * np.sign(W[np.argmax(np.abs(W), axis=0), np.arange(bits)])
    expected = (Xq.astype(np.float64) - mu) @ W > 0
    np.testing.assert_array_equal(pcah.encode(state, Xq, None, {}), expected)


def test_sh_doctest_and_mode_choice(data):
    from pipeline.baselines import sh

    assert doctest.testmod(sh).failed == 0
    (Xt, _), (Xq, _), _ = data
    state = sh.fit(Xt, None, 16, {}, 0)
    widths = state["maxs"] - state["mins"]
    omegas = state["mode_k"] * np.pi / widths[state["mode_dims"]]
    np.testing.assert_allclose(state["omegas"], omegas)
    # the chosen modes are the 16 smallest frequencies among k = 1..16 on every direction
    all_omegas = np.sort((np.arange(1, 17)[:, None] * np.pi / widths[None, :]).ravel())
    np.testing.assert_allclose(np.sort(state["omegas"]), all_omegas[:16])
    # encode = sign of the analytical eigenfunction along the PCA direction
    y = (Xq.astype(np.float64) - state["mean"]) @ state["projection"]
    j = state["mode_dims"]
    expected = np.sin(np.pi / 2 + state["omegas"] * (y[:, j] - state["mins"][j])) > 0
    np.testing.assert_array_equal(sh.encode(state, Xq, None, {}), expected)


def test_sklsh_formula_and_sigma(data):
    from pipeline.baselines import sklsh

    (Xt, _), (Xq, _), _ = data
    state = sklsh.fit(Xt, None, 32, {"sigma": 3.0}, 0)
    assert state["sigma"] == 3.0 and state["sigma_rule"] == "given"
    rng = np.random.default_rng(0)  # documented draw order: w, then b, then t
    w = rng.standard_normal((64, 32))
    b = rng.uniform(0.0, 2.0 * np.pi, 32)
    t = rng.uniform(-1.0, 1.0, 32)
    expected = np.cos(Xq.astype(np.float64) @ (w / 3.0) + b) + t > 0
    np.testing.assert_array_equal(sklsh.encode(state, Xq, None, {}), expected)
    auto = sklsh.fit(Xt, None, 32, {}, 0)
    assert 0 < auto["sigma"] and "nearest neighbour" in auto["sigma_rule"]


def test_sgh_feature_transformation_and_defaults(data):
    from pipeline.baselines import sgh

    (Xt, _), _, _ = data
    X = Xt[:50].astype(np.float64)
    Xc = X - X.mean(axis=0)
    rho = 2.0 * np.max(np.sum(Xc**2, axis=1))
    P, Q = sgh.feature_transform(Xc, rho)
    approx = P @ Q.T
    # exact algebra: 2 e^{-|xi|^2/rho} e^{-|xj|^2/rho} (a u + b) - 1 with u = 2 xi.xj / rho
    e = np.e
    s = np.exp(-np.sum(Xc**2, axis=1) / rho)
    u = 2.0 * Xc @ Xc.T / rho
    assert np.all(np.abs(u) <= 1.0 + 1e-12)
    line = (e**2 - 1) / (2 * e) * u + (e**2 + 1) / (2 * e)
    np.testing.assert_allclose(approx, 2 * np.outer(s, s) * line - 1, atol=1e-12)
    exact = 2 * np.exp(-np.sum((X[:, None] - X[None]) ** 2, axis=2) / rho) - 1
    assert np.corrcoef(approx.ravel(), exact.ravel())[0, 1] > 0.95
    assert np.all(approx >= exact - 1e-12)  # the secant lies above the convex e^u

    state = sgh.fit(Xt, None, 16, {}, 0)
    assert state["anchors"].shape == (300, 64) and state["weights"].shape == (300, 16)
    Xc_all = Xt.astype(np.float64) - Xt.astype(np.float64).mean(axis=0)
    assert state["rho"] == pytest.approx(2.0 * np.max(np.sum(Xc_all**2, axis=1)))
    small = sgh.fit(Xt[:120], None, 16, {}, 0)
    assert small["anchors"].shape == (120, 64)  # m = n when there are fewer than 300 points


def test_random_codes_ignore_features(data):
    from pipeline.baselines import random as random_codes

    (Xt, _), (Xq, _), _ = data
    state = random_codes.fit(Xt, None, 64, {}, 5)
    a = random_codes.encode(state, Xq, None, {})
    np.testing.assert_array_equal(a, random_codes.encode(state, -3.0 * Xq + 100.0, None, {}))
    assert abs(a.mean() - 0.5) < 0.02


@pytest.mark.parametrize("name", ["lsh", "sklsh", "sgh", "random"])
def test_bits_may_exceed_dim_where_allowed(name):
    X = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    mod = module(name)
    assert mod.encode(mod.fit(X, None, 20, {}, 0), X, None, {}).shape == (200, 20)


@pytest.mark.parametrize("name", ALL)
def test_state_survives_torch_save(data, name):
    (Xt, _), (Xq, _), _ = data
    mod = module(name)
    state = mod.fit(Xt, None, 16, {}, 0)
    buf = io.BytesIO()
    torch.save({"method": name, "state": state}, buf)
    buf.seek(0)
    allowed = [np._core.multiarray._reconstruct, np.ndarray, np.dtype]
    allowed += [np.dtypes.Float64DType, np.dtypes.Int64DType]
    with torch.serialization.safe_globals(allowed):
        loaded = torch.load(buf, weights_only=True)["state"]
    np.testing.assert_array_equal(mod.encode(loaded, Xq, None, {}), mod.encode(state, Xq))


# ---------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", ALL)
def test_errors_on_bad_input(data, name):
    (Xt, _), _, _ = data
    mod = module(name)
    with pytest.raises(ValueError, match="2-D"):
        mod.fit(Xt[:, 0], None, 16, {}, 0)
    with pytest.raises(ValueError, match="2-D"):
        mod.fit(Xt[None], None, 16, {}, 0)
    bad = Xt.copy()
    bad[17, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mod.fit(bad, None, 16, {}, 0)
    for bits in (0, -4):
        with pytest.raises(ValueError, match=">= 1"):
            mod.fit(Xt, None, bits, {}, 0)
    with pytest.raises(ValueError, match="bits must be an int"):
        mod.fit(Xt, None, 16.0, {}, 0)
    with pytest.raises(ValueError, match="unknown parameter"):
        mod.fit(Xt, None, 16, {"no_such_option": 1}, 0)
    with pytest.raises(ValueError, match="seed"):
        mod.fit(Xt, None, 16, {}, -1)

    state = mod.fit(Xt, None, 16, {}, 0)
    with pytest.raises(ValueError, match="fitted on 64"):
        mod.encode(state, Xt[:, :10], None, {})
    with pytest.raises(ValueError, match="2-D"):
        mod.encode(state, Xt[0], None, {})
    with pytest.raises(ValueError, match="NaN"):
        mod.encode(state, bad, None, {})
    other = "pcah" if name != "pcah" else "lsh"
    with pytest.raises(ValueError, match="fitted by method"):
        mod.encode(module(other).fit(Xt, None, 16, {}, 0), Xt, None, {})


@pytest.mark.parametrize("name", NEEDS_BITS_LE_D)
def test_bits_larger_than_dim_rejected(data, name):
    (Xt, _), _, _ = data
    with pytest.raises(ValueError, match=r"bits must be <= the feature dimension \(64\)"):
        module(name).fit(Xt, None, 65, {}, 0)
    assert module(name).fit(Xt, None, 64, {}, 0)["bits"] == 64


def test_bad_method_params():
    from pipeline.baselines import itq, sgh, sklsh

    X = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="iterations"):
        itq.fit(X, None, 4, {"iterations": -1}, 0)
    with pytest.raises(ValueError, match="sigma"):
        sklsh.fit(X, None, 4, {"sigma": 0.0}, 0)
    with pytest.raises(ValueError, match="anchors"):
        sgh.fit(X, None, 4, {"anchors": 0}, 0)
    with pytest.raises(ValueError, match="rho"):
        sgh.fit(X, None, 4, {"rho": -1.0}, 0)
    with pytest.raises(ValueError, match="block_rows"):
        itq.fit(X, None, 4, {"block_rows": 0}, 0)
