"""The reference rows built from LAGNH's own inputs (``aux``, ``aux_itq``) and the validation
split they choose settings on."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.baselines import aux, aux_itq, itq
from pipeline.methods import get_method, training_params, uses_aux, uses_train_labels
from pipeline.validation import validation_map, validation_split


def _single_label(n: int, c: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.eye(c, dtype=np.uint8)[rng.integers(0, c, n)]


def test_registered_with_flags() -> None:
    assert get_method("aux") is aux and get_method("aux_itq") is aux_itq
    assert uses_aux(aux, {}) and uses_aux(aux_itq, {}) and not uses_aux(itq, {})
    assert uses_train_labels(aux_itq) and not uses_train_labels(aux)
    assert uses_aux(get_method("lagnh"), {}) is True
    assert uses_aux(get_method("lagnh"), {"ablation": "no-aux"}) is False


def test_training_params_drop_only_encode_keys() -> None:
    p = {"lr": 1e-3, "encode_mode": "batch", "encode_neighbors": 8, "encode_scale": "none",
         "encode_batch_size": 4, "device": "cpu"}
    assert training_params("lagnh", p) == {"lr": 1e-3, "device": "cpu"}
    assert training_params("itq", {"iterations": 3}) == {"iterations": 3}


def test_aux_code_is_the_label_vector() -> None:
    y = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]], np.uint8)
    state = aux.fit(np.zeros((3, 4), np.float32), y, 64, {}, 0)
    assert state["code_bits"] == 3 and state["bits"] == 64
    assert np.array_equal(aux.encode(state, np.ones((3, 4)), y), y.astype(bool))
    with pytest.raises(ValueError, match="3 classes, the model was fitted on 3|fitted on 3"):
        aux.encode(state, np.ones((1, 4)), np.ones((1, 5), np.uint8))
    with pytest.raises(ValueError, match="0/1"):
        aux.encode(state, np.ones((1, 4)), np.array([[2, 0, 0]]))
    with pytest.raises(ValueError, match="auxiliary labels"):
        aux.fit(np.zeros((3, 4)), None, 16, {}, 0)


def test_aux_itq_layout_with_fixed_k() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 20)).astype(np.float32)
    y = (rng.random((60, 4)) < 0.5).astype(np.uint8)
    state = aux_itq.fit(x, y, 16, {"repeats": 2}, seed=5)
    codes = aux_itq.encode(state, x, y)
    assert codes.shape == (60, 16) and state["code_bits"] == 16
    # two copies of the 4 aux bits, then ITQ with the 8 remaining bits, fitted on all of X
    assert np.array_equal(codes[:, :4], y.astype(bool))
    assert np.array_equal(codes[:, 4:8], y.astype(bool))
    ref = itq.fit(x, None, 8, {}, 5)
    assert np.array_equal(codes[:, 8:], itq.encode(ref, x))
    assert state["selected"] == {"repeats": 2, "aux_classes": 4, "itq_bits": 8,
                                 "source": "config", "validation_map": None}
    with pytest.raises(ValueError, match=r"one of \[0, 1, 2, 3, 4\]"):
        aux_itq.fit(x, y, 16, {"repeats": 5}, seed=5)


def test_aux_itq_validation_needs_labels() -> None:
    x, y = np.zeros((10, 3), np.float32), np.eye(2, dtype=np.uint8)[[0, 1] * 5]
    with pytest.raises(ValueError, match="needs the training images' labels"):
        aux_itq.fit(x, y, 8, {}, 0)


def test_aux_itq_validation_follows_the_informative_input() -> None:
    n, c = 300, 8
    truth = _single_label(n, c, seed=1)
    rng = np.random.default_rng(2)
    # aux = truth, features noise: all aux bits (k = 32 // 8 = 4, no ITQ bits left)
    noise = rng.normal(size=(n, 40)).astype(np.float32)
    state = aux_itq.fit(noise, truth, 32, {}, seed=0, labels=truth)
    assert state["selected"]["repeats"] == 4 and state["selected"]["source"] == "validation"
    assert [row["repeats"] for row in state["validation"]] == [0, 1, 2, 3, 4]
    # aux random, features clustered by the truth: ITQ alone (k = 0)
    centres = rng.normal(scale=4.0, size=(c, 40))
    feats = (truth @ centres + rng.normal(size=(n, 40))).astype(np.float32)
    junk = _single_label(n, c, seed=9)
    state = aux_itq.fit(feats, junk, 32, {}, seed=0, labels=truth)
    assert state["selected"]["repeats"] == 0


def test_aux_itq_more_classes_than_bits_keeps_the_most_frequent() -> None:
    y = np.zeros((6, 5), np.uint8)
    y[:, 3] = 1
    y[:4, 1] = 1
    y[:2, 4] = 1
    cands = aux_itq.candidates(2, y.astype(bool))
    assert [(k, c.tolist()) for k, c in cands] == [(0, []), (1, [1, 3])]


def test_validation_split_is_seeded_and_disjoint() -> None:
    a = validation_split(100, 0.2, 0.3, seed=4)
    b = validation_split(100, 0.2, 0.3, seed=4)
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    assert (len(a.query), len(a.database), len(a.rest)) == (20, 30, 50)
    assert len(np.unique(np.concatenate(a))) == 100
    assert not np.array_equal(a.query, validation_split(100, 0.2, 0.3, seed=5).query)
    with pytest.raises(ValueError, match="sum < 1"):
        validation_split(100, 0.6, 0.5, seed=0)


def test_validation_map_by_hand() -> None:
    # one query, database rows at distance 0, 1, 2; relevant: rows 0 and 1 -> AP = 1
    q = np.array([[False, False]])
    db = np.array([[False, False], [True, False], [True, True]])
    ql, dbl = np.array([[1, 0]]), np.array([[1, 0], [1, 1], [0, 1]])
    assert validation_map(q, db, ql, dbl) == pytest.approx(1.0)
    # reversed relevance: relevant rows 1 and 2 at ranks 2 and 3 -> (1/2 + 2/3) / 2
    dbl2 = np.array([[0, 1], [1, 1], [1, 0]])
    assert validation_map(q, db, ql, dbl2) == pytest.approx((1 / 2 + 2 / 3) / 2)
