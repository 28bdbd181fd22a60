"""MAP@K, topK-precision and PR-within-radius: hand values and independent references."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from pipeline.codes import pack_codes
from pipeline.retrieval.metrics import (
    average_precision_at_k,
    default_pk_grid,
    evaluate_retrieval,
    evaluate_retrieval_float,
    mean_average_precision,
    mean_average_precision_float,
    pack_labels,
    precision_at_k_curve,
    precision_recall_hamming_radius,
)

# ---------------------------------------------------------------- an independent reference


def ref_map(qb, dbb, ql, dl, topk, zero_hit):
    """Pure-python MAP@K: python-int popcounts, sorted() by (distance, index), label sets."""
    q_int = [int("".join("1" if x else "0" for x in row), 2) for row in qb]
    d_int = [int("".join("1" if x else "0" for x in row), 2) for row in dbb]
    q_sets = [set(np.flatnonzero(r)) for r in ql]
    d_sets = [set(np.flatnonzero(r)) for r in dl]
    aps = []
    for qi, qv in enumerate(q_int):
        dist = [bin(qv ^ dv).count("1") for dv in d_int]
        ranking = sorted(range(len(d_int)), key=lambda j: (dist[j], j))
        rel = [bool(q_sets[qi] & d_sets[j]) for j in ranking]
        if not any(rel) and zero_hit == "drop":
            continue
        cut = rel if topk is None else rel[:topk]
        hits, s = 0, 0.0
        for i, r in enumerate(cut, start=1):
            if r:
                hits += 1
                s += hits / i
        aps.append(s / hits if hits else 0.0)
    return float(np.mean(aps)) if aps else float("nan")


def random_problem(seed, n_q=20, n_db=300, bits=24, n_cls=6, free_bits=None):
    rng = np.random.default_rng(seed)
    qb = rng.random((n_q, bits)) < 0.5
    dbb = np.zeros((n_db, bits), bool)
    cols = np.arange(bits) if free_bits is None else rng.choice(bits, free_bits, replace=False)
    dbb[:, cols] = rng.random((n_db, len(cols))) < 0.5
    ql = (rng.random((n_q, n_cls)) < 0.25).astype(np.uint8)
    dl = (rng.random((n_db, n_cls)) < 0.2).astype(np.uint8)
    return qb, dbb, ql, dl


# ---------------------------------------------------------------- AP of a ranked list


def test_average_precision_hand_values():
    # relevant at ranks 1 and 3: (1/1 + 2/3) / 2
    assert average_precision_at_k(np.array([1, 0, 1], bool)) == pytest.approx(5 / 6)
    # relevant at ranks 2 and 4: (1/2 + 2/4) / 2
    assert average_precision_at_k(np.array([0, 1, 0, 1], bool)) == pytest.approx(0.5)
    # K=2 keeps only rank 2: (1/2) / 1
    assert average_precision_at_k(np.array([0, 1, 0, 1], bool), k=2) == pytest.approx(0.5)
    # no relevant item in the top K contributes 0
    assert average_precision_at_k(np.array([0, 1, 0, 1], bool), k=1) == 0.0
    assert average_precision_at_k(np.zeros(5, bool)) == 0.0
    rows = average_precision_at_k(np.array([[1, 0, 1], [0, 0, 1]], bool))
    np.testing.assert_allclose(rows, [5 / 6, 1 / 3])


def tie_problem():
    """One query 00; db 11(rel), 01(not), 10(rel), 00(not): distances 2, 1, 1, 0."""
    q = np.array([[0, 0]], bool)
    db = np.array([[1, 1], [0, 1], [1, 0], [0, 0]], bool)
    ql = np.array([[1, 0]], np.uint8)
    dl = np.array([[1, 0], [0, 1], [1, 1], [0, 1]], np.uint8)
    return q, db, ql, dl


def test_map_ties_resolved_by_index():
    # order by (distance, index): 3 (d0, not), 1 (d1, not), 2 (d1, rel), 0 (d2, rel)
    # relevance 0,0,1,1 -> AP = (1/3 + 2/4) / 2 = 5/12; the reverse tie order would give 0.5
    q, db, ql, dl = tie_problem()
    r = mean_average_precision(q, db, ql, dl, topk=None)
    assert r.map == pytest.approx(5 / 12, abs=1e-12)
    # top 3 holds one relevant item at rank 3: AP@3 = (1/3) / 1
    assert mean_average_precision(q, db, ql, dl, topk=3).map == pytest.approx(1 / 3)
    assert mean_average_precision(q, db, ql, dl, topk=2).map == 0.0
    # packed input with explicit bits gives the same
    packed = mean_average_precision(pack_codes(q), pack_codes(db), ql, dl, topk=None, bits=2)
    assert packed.map == r.map


def test_zero_hit_drop_vs_zero():
    q, db, ql, dl = tie_problem()
    q2 = np.concatenate([q, q])
    ql2 = np.array([[1, 0, 0], [0, 0, 1]], np.uint8)  # query 2's class never occurs in db
    dl2 = np.concatenate([dl, np.zeros((4, 1), np.uint8)], axis=1)
    drop = mean_average_precision(q2, db, ql2, dl2, topk=None, zero_hit="drop")
    zero = mean_average_precision(q2, db, ql2, dl2, topk=None, zero_hit="zero")
    assert drop.map == pytest.approx(5 / 12) and drop.n_queries_used == 1
    assert zero.map == pytest.approx(5 / 24) and zero.n_queries_used == 2
    assert drop.n_queries_total == zero.n_queries_total == 2
    np.testing.assert_array_equal(drop.used, [True, False])
    # a query with relevant items only below rank K counts as 0 under both conventions
    top2 = mean_average_precision(q2, db, ql2, dl2, topk=2, zero_hit="drop")
    assert top2.map == 0.0 and top2.n_queries_used == 1


@pytest.mark.parametrize("bits", [16, 24, 48, 64])
@pytest.mark.parametrize("topk", [1, 10, 100, None])
@pytest.mark.parametrize("zero_hit", ["drop", "zero"])
def test_map_matches_pure_python_reference(bits, topk, zero_hit):
    qb, dbb, ql, dl = random_problem(bits, bits=bits, free_bits=min(bits, 7))
    got = mean_average_precision(qb, dbb, ql, dl, topk=topk, zero_hit=zero_hit, chunk=3)
    assert got.map == pytest.approx(ref_map(qb, dbb, ql, dl, topk, zero_hit), abs=1e-12)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.integers(1, 40), st.integers(1, 8), st.integers(1, 120), st.integers(1, 150),
       st.sampled_from(["drop", "zero"]), st.integers(0, 2**32 - 1))
def test_map_property_reference(bits, n_q, n_db, topk, zero_hit, seed):
    qb, dbb, ql, dl = random_problem(seed, n_q=n_q, n_db=n_db, bits=bits,
                                     free_bits=min(bits, 3))
    got = mean_average_precision(qb, dbb, ql, dl, topk=topk, zero_hit=zero_hit, chunk=2)
    want = ref_map(qb, dbb, ql, dl, topk, zero_hit)
    if np.isnan(want):
        assert np.isnan(got.map) and got.n_queries_used == 0
    else:
        assert got.map == pytest.approx(want, abs=1e-12)


def test_map_all_matches_sklearn():
    qb, dbb, ql, dl = random_problem(7, n_q=30, n_db=400, bits=32, free_bits=8)
    got = mean_average_precision(qb, dbb, ql, dl, topk=None, zero_hit="drop")
    d = (qb[:, None, :] != dbb[None]).sum(-1)
    rel = (ql.astype(int) @ dl.T.astype(int)) > 0
    n = len(dbb)
    aps = [average_precision_score(rel[i], -(d[i] * n + np.arange(n)))  # unique scores
           for i in range(len(qb)) if rel[i].any()]
    assert got.map == pytest.approx(np.mean(aps), abs=1e-12)
    assert got.n_queries_used == int(rel.any(1).sum())


def test_topk_larger_than_database_is_map_all():
    qb, dbb, ql, dl = random_problem(3)
    assert (mean_average_precision(qb, dbb, ql, dl, topk=10**6).map
            == mean_average_precision(qb, dbb, ql, dl, topk=None).map)


def test_chunks_threads_devices_agree():
    qb, dbb, ql, dl = random_problem(11, n_q=40, n_db=900, bits=48, free_bits=9)
    ref = mean_average_precision(qb, dbb, ql, dl, topk=100, chunk=40, threads=1,
                                 device="numpy")
    for kw in ({"chunk": 1}, {"chunk": 7, "threads": 2}, {"device": "cpu", "chunk": 9}):
        got = mean_average_precision(qb, dbb, ql, dl, topk=100, **kw)
        np.testing.assert_array_equal(got.ap, ref.ap)


def test_many_label_words():
    # 130 classes need three uint64 words; only the last class is shared
    ql = np.zeros((1, 130), np.uint8)
    ql[0, 129] = 1
    dl = np.zeros((3, 130), np.uint8)
    dl[2, 129] = 1
    dl[0, 0] = dl[1, 64] = 1
    assert pack_labels(dl).shape == (3, 3)
    q = np.zeros((1, 8), bool)
    db = np.zeros((3, 8), bool)
    # all distances 0: ranking 0, 1, 2; the only relevant item is at rank 3
    assert mean_average_precision(q, db, ql, dl, topk=None).map == pytest.approx(1 / 3)


# ---------------------------------------------------------------- topK-precision


def test_precision_at_k_hand_values():
    q, db, ql, dl = tie_problem()
    pk = precision_at_k_curve(q, db, ql, dl, ks=[1, 2, 3, 10])
    # relevance along the ranking 0,0,1,1; K=10 is clipped to the 4 database items
    assert pk.k.tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(pk.precision, [0, 0, 1 / 3, 1 / 2])


def test_precision_at_k_matches_reference():
    qb, dbb, ql, dl = random_problem(5, n_q=25, n_db=500, bits=16, free_bits=6)
    ks = [1, 7, 50, 499, 500]
    pk = precision_at_k_curve(qb, dbb, ql, dl, ks=ks, zero_hit="zero")
    d = (qb[:, None, :] != dbb[None]).sum(-1)
    order = np.argsort(d, axis=1, kind="stable")
    rel = ((ql.astype(int) @ dl.T.astype(int)) > 0)
    ranked = np.take_along_axis(rel, order, 1)
    want = [ranked[:, :k].sum(1).mean() / k for k in ks]
    np.testing.assert_allclose(pk.precision, want, rtol=0, atol=1e-12)


def test_default_grid():
    g = default_pk_grid()
    assert g[:3].tolist() == [1, 50, 100] and g[-1] == 5000 and len(g) == 101
    assert default_pk_grid(120).tolist() == [1, 50, 100, 120]


# ---------------------------------------------------------------- PR within Hamming radius


def test_pr_radius_hand_values():
    q, db, ql, dl = tie_problem()
    pr = precision_recall_hamming_radius(q, db, ql, dl, bits=2)
    # radius 0: {3} -> 0 relevant of 1; radius 1: {3,1,2} -> 1 of 3; radius 2: all 4 -> 2 of 4
    np.testing.assert_allclose(pr.precision, [0, 1 / 3, 1 / 2])
    np.testing.assert_allclose(pr.recall, [0, 1 / 2, 1])
    assert pr.radius.tolist() == [0, 1, 2]


def test_pr_radius_empty_lookup_has_zero_precision():
    q = np.array([[1, 1]], bool)
    db = np.array([[0, 0], [0, 0]], bool)  # nothing within radius 0 or 1
    lab = np.ones((1, 1), np.uint8)
    pr = precision_recall_hamming_radius(q, db, lab, np.ones((2, 1), np.uint8))
    np.testing.assert_allclose(pr.precision[:3], [0, 0, 1])
    np.testing.assert_allclose(pr.recall[:3], [0, 0, 1])


def test_pr_radius_matches_reference():
    qb, dbb, ql, dl = random_problem(9, n_q=15, n_db=250, bits=24)
    pr = precision_recall_hamming_radius(qb, dbb, ql, dl, zero_hit="drop", chunk=4)
    d = (qb[:, None, :] != dbb[None]).sum(-1)
    rel = (ql.astype(int) @ dl.T.astype(int)) > 0
    keep = rel.any(1)
    ps, rs = [], []
    for t in range(25):
        within = d <= t
        n = within.sum(1)
        m = (within & rel).sum(1)
        p = np.where(n > 0, m / np.maximum(n, 1), 0.0)
        ps.append(p[keep].mean())
        rs.append((m / np.maximum(rel.sum(1), 1))[keep].mean())
    np.testing.assert_allclose(pr.precision, ps, atol=1e-12)
    np.testing.assert_allclose(pr.recall, rs, atol=1e-12)
    assert pr.n_queries_used == int(keep.sum())


def test_evaluate_retrieval_one_pass_agrees():
    qb, dbb, ql, dl = random_problem(13, n_q=20, n_db=600, bits=32)
    rep = evaluate_retrieval(qb, dbb, ql, dl, topk=50, ks=[1, 10, 100])
    assert rep.map.map == mean_average_precision(qb, dbb, ql, dl, topk=50).map
    np.testing.assert_array_equal(
        rep.precision_at_k.precision,
        precision_at_k_curve(qb, dbb, ql, dl, ks=[1, 10, 100]).precision)
    np.testing.assert_array_equal(rep.pr_radius.recall,
                                  precision_recall_hamming_radius(qb, dbb, ql, dl).recall)


# ---------------------------------------------------------------- float ceiling


def test_float_map_matches_reference():
    rng = np.random.default_rng(21)
    qf, df = rng.normal(size=(12, 5)), rng.normal(size=(200, 5))
    ql = (rng.random((12, 4)) < 0.3).astype(np.uint8)
    dl = (rng.random((200, 4)) < 0.3).astype(np.uint8)
    rel = (ql.astype(int) @ dl.T.astype(int)) > 0
    for topk in (1, 20, None):
        aps = []
        for i in range(12):
            if not rel[i].any():
                continue
            dist = np.sqrt(((df - qf[i]) ** 2).sum(1))
            ranked = rel[i][np.argsort(dist, kind="stable")]
            aps.append(average_precision_at_k(ranked, k=topk))
        got = mean_average_precision_float(qf, df, ql, dl, topk=topk, chunk=5)
        assert got.map == pytest.approx(np.mean(aps), abs=1e-12)


def test_float_ties_by_index():
    qf = np.zeros((1, 2))
    df = np.array([[1.0, 0], [0, 1.0], [1.0, 0]])  # all at distance 1
    ql = np.array([[1]], np.uint8)
    dl = np.array([[0], [1], [1]], np.uint8)
    # index order 0 (not), 1 (rel), 2 (rel): AP = (1/2 + 2/3) / 2
    rep = evaluate_retrieval_float(qf, df, ql, dl, topk=2, ks=[1, 2, 3])
    assert rep.map.map == pytest.approx(0.5)  # AP@2: (1/2) / 1
    np.testing.assert_allclose(rep.precision_at_k.precision, [0, 1 / 2, 2 / 3])
    assert mean_average_precision_float(qf, df, ql, dl, topk=None).map == pytest.approx(7 / 12)


# ---------------------------------------------------------------- input validation


def test_validation_errors():
    q, db, ql, dl = tie_problem()
    with pytest.raises(ValueError, match="zero_hit"):
        mean_average_precision(q, db, ql, dl, zero_hit="keep")
    with pytest.raises(ValueError, match="topk"):
        mean_average_precision(q, db, ql, dl, topk=0)
    with pytest.raises(ValueError, match="rows do not match"):
        mean_average_precision(q, db, ql, dl[:3])
    with pytest.raises(ValueError, match="0/1"):
        mean_average_precision(q, db, ql, dl * 2)
    with pytest.raises(ValueError, match="classes"):
        mean_average_precision(q, db, ql, dl[:, :1])
    with pytest.raises(ValueError, match="bytes per row"):
        mean_average_precision(np.zeros((1, 2), np.uint8), np.zeros((4, 1), np.uint8), ql, dl)
