"""Hamming distances and the exact stable top-K against brute force."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.codes import pack_codes
from pipeline.retrieval.hamming import code_words, hamming_distance, hamming_topk


def brute(qb: np.ndarray, dbb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances from unpacked bits and the ranking by (distance, index) via a stable sort."""
    d = (qb[:, None, :] != dbb[None, :, :]).sum(-1)
    return d, np.argsort(d, axis=1, kind="stable")


def random_codes(rng, n, bits, free_bits=None):
    """Random codes; with ``free_bits`` only that many bits vary (many exact ties)."""
    b = np.zeros((n, bits), bool)
    cols = np.arange(bits) if free_bits is None else rng.choice(bits, free_bits, replace=False)
    b[:, cols] = rng.random((n, len(cols))) < 0.5
    return b


def test_hand_made_ties_by_index():
    q = pack_codes(np.array([[1, 1, 0, 0]], bool))
    db = pack_codes(np.array([[1, 0, 0, 0],   # d=1
                              [0, 0, 1, 1],   # d=4
                              [1, 1, 0, 0],   # d=0
                              [0, 1, 0, 0],   # d=1
                              [1, 1, 1, 0]],  # d=1
                             bool))
    idx, dist = hamming_topk(q, db, 4, device="numpy")
    # d=0 first, then the three d=1 items in index order; row 1 (d=4) is cut
    assert idx.tolist() == [[2, 0, 3, 4]]
    assert dist.tolist() == [[0, 1, 1, 1]]
    assert idx.dtype == np.int64
    full, dfull = hamming_topk(q, db, None, device="numpy")
    assert full.tolist() == [[2, 0, 3, 4, 1]] and dfull.tolist() == [[0, 1, 1, 1, 4]]


CUDA = pytest.param("cuda", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")])


@pytest.mark.parametrize("bits", [8, 16, 24, 32, 48, 64, 72, 128, 264])
@pytest.mark.parametrize("device", ["numpy", "cpu", CUDA])
def test_topk_matches_brute_force(bits, device):
    rng = np.random.default_rng(bits)
    n = 700
    qb = random_codes(rng, 23, bits)
    dbb = random_codes(rng, n, bits, free_bits=min(bits, 6))  # heavy ties
    dbb[::3] = random_codes(rng, len(dbb[::3]), bits)
    d, order = brute(qb, dbb)
    for k in (1, 5, 64, 333, n, None):
        idx, dist = hamming_topk(pack_codes(qb), pack_codes(dbb), k, chunk=7, device=device)
        kk = n if k is None else k
        np.testing.assert_array_equal(idx, order[:, :kk])
        np.testing.assert_array_equal(dist, np.take_along_axis(d, order[:, :kk], 1))


def test_estimate_too_low_is_corrected():
    # the strided sample (step 16 for k=1024) sees only the distance-0 rows, so the first
    # cutoff guess (0) admits too few items and must be raised
    rng = np.random.default_rng(0)
    bits, n, k = 32, 4096, 1024
    q = random_codes(rng, 1, bits)
    db = np.repeat(q, n, axis=0)
    far = np.arange(n) % 16 != 0
    db[far, :5] = ~db[far, :5]
    d, order = brute(q, db)
    idx, dist = hamming_topk(pack_codes(q), pack_codes(db), k, device="numpy")
    np.testing.assert_array_equal(idx, order[:, :k])
    assert dist[0, :256].max() == 0 and dist[0, 256:].min() == 5


@pytest.mark.parametrize("chunk,threads", [(1, 1), (3, 2), (64, 2), (1000, 1)])
def test_chunked_equals_unchunked(chunk, threads):
    rng = np.random.default_rng(1)
    q = pack_codes(random_codes(rng, 50, 48))
    db = pack_codes(random_codes(rng, 2000, 48, free_bits=10))
    ref = hamming_topk(q, db, 100, chunk=50, threads=1, device="numpy")
    got = hamming_topk(q, db, 100, chunk=chunk, threads=threads, device="numpy")
    np.testing.assert_array_equal(ref[0], got[0])
    np.testing.assert_array_equal(ref[1], got[1])


@pytest.mark.parametrize("nbytes,dtype,words", [(1, np.uint8, 1), (2, np.uint16, 1),
                                                (3, np.uint32, 1), (4, np.uint32, 1),
                                                (6, np.uint64, 1), (8, np.uint64, 1),
                                                (9, np.uint64, 2), (16, np.uint64, 2)])
def test_code_words_layout(nbytes, dtype, words):
    rng = np.random.default_rng(nbytes)
    packed = rng.integers(0, 256, (5, nbytes), dtype=np.uint8)
    w = code_words(packed)
    assert w.dtype == dtype and w.shape == (5, words)
    # padding keeps every popcount: total set bits are unchanged
    assert np.bitwise_count(w).sum() == np.bitwise_count(packed).sum()


@pytest.mark.parametrize("bits", [16, 24, 48, 64])
@pytest.mark.parametrize("torch_device", ["cpu", CUDA])
def test_distance_equals_inner_product_form(bits, torch_device):
    rng = np.random.default_rng(bits + 1)
    qb, dbb = random_codes(rng, 9, bits), random_codes(rng, 31, bits)
    pm = lambda b: np.where(b, 1, -1)  # noqa: E731
    expected = (bits - pm(qb) @ pm(dbb).T) // 2
    for device in ("numpy", torch_device):
        got = hamming_distance(pack_codes(qb), pack_codes(dbb), chunk=4, device=device)
        np.testing.assert_array_equal(got, expected)


def test_errors():
    a = np.zeros((2, 4), np.uint8)
    with pytest.raises(ValueError, match="bytes per row"):
        hamming_topk(a, np.zeros((3, 2), np.uint8), 1)
    with pytest.raises(ValueError, match="empty"):
        hamming_topk(a, np.zeros((0, 4), np.uint8), 1)
    with pytest.raises(ValueError, match="k must be"):
        hamming_topk(a, a, 0)
    with pytest.raises(TypeError, match="uint8"):
        hamming_topk(a.astype(np.int32), a, 1)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.integers(1, 70), st.integers(1, 9), st.integers(1, 300), st.integers(1, 400),
       st.integers(0, 2**32 - 1))
def test_property_stable_topk(bits, n_q, n_db, k, seed):
    rng = np.random.default_rng(seed)
    qb = random_codes(rng, n_q, bits)
    dbb = random_codes(rng, n_db, bits, free_bits=min(bits, int(rng.integers(1, 8))))
    d, order = brute(qb, dbb)
    idx, dist = hamming_topk(pack_codes(qb), pack_codes(dbb), k, chunk=4, device="numpy")
    kk = min(k, n_db)
    np.testing.assert_array_equal(idx, order[:, :kk])
    np.testing.assert_array_equal(dist, np.take_along_axis(d, order[:, :kk], 1))
