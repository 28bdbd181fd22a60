r"""Retrieval metrics of the paper's evaluation (Sec. 4.1): MAP@K, topK-precision, PR curves.

Paper: Chen et al., "Two-pronged Strategy: Lightweight Augmented Graph Network Hashing for
Scalable Image Retrieval", ACM MM 2021 (https://doi.org/10.1145/3474085.3475605).

**Relevance.** A database item is relevant to a query when they share at least one ground-truth
label (labels are ``uint8 (N, C)`` 0/1 and are used only here). Labels are packed into ``uint64``
bit sets, so relevance is a bitwise AND, no floating point.

**Ranking.** Hamming distance to the query, ties by database index ascending (a stable sort, as in
the authors' MATLAB evaluation); see :mod:`pipeline.retrieval.hamming`. The real-valued ceiling
ranks by squared Euclidean distance with the same tie rule.

**AP@K.** For a ranked list with relevance :math:`\mathrm{rel}_i \in \{0, 1\}`,

.. math::
    \mathrm{AP@K} = \frac{1}{R_K} \sum_{i=1}^{K} \mathrm{rel}_i\, P@i,
    \qquad P@i = \frac{1}{i}\sum_{j=1}^{i} \mathrm{rel}_j, \qquad
    R_K = \sum_{i=1}^{K} \mathrm{rel}_i,

with :math:`\mathrm{AP@K} = 0` when :math:`R_K = 0`. MAP@K is the mean over queries.

**Zero-hit queries** (no relevant item in the *whole* retrieval set) are either dropped from every
mean (``zero_hit="drop"``, the authors' convention and the default) or kept and count as 0
(``zero_hit="zero"``, as DeepHash-pytorch's ``CalcTopMap``). A query whose relevant items all fall
below rank K counts as 0 under both conventions.

All metric functions are pure; the heavy lifting streams over query chunks, so memory stays
``O(chunk * N)`` whatever the number of queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline import schema
from pipeline.codes import check_packed
from pipeline.retrieval.hamming import map_distance_chunks, map_topk_chunks

__all__ = [
    "DEFAULT_TOPK",
    "ZERO_HIT_MODES",
    "MAPResult",
    "PrecisionAtK",
    "PRCurve",
    "RetrievalResult",
    "default_pk_grid",
    "pack_labels",
    "relevance",
    "average_precision_at_k",
    "mean_average_precision",
    "precision_at_k_curve",
    "precision_recall_hamming_radius",
    "evaluate_retrieval",
    "mean_average_precision_float",
    "evaluate_retrieval_float",
]

#: K of MAP@K when none is given: the schema's ``eval.topk``
DEFAULT_TOPK = schema.defaults("eval")["topk"]
ZERO_HIT_MODES = ("drop", "zero")


@dataclass(frozen=True)
class MAPResult:
    """Mean average precision of one evaluation.

    Attributes:
        map: MAP@``topk`` over the queries that count (``nan`` when none counts).
        ap: ``float64 (Q,)`` AP@``topk`` of every query (0 without a relevant item in the top K).
        used: ``bool (Q,)`` queries that count in the mean under ``zero_hit``.
        n_queries_used: ``used.sum()``.
        n_queries_total: ``Q``.
        topk: the K of MAP@K (``None`` = whole ranking).
        zero_hit: ``"drop"`` or ``"zero"``.
    """

    map: float
    ap: np.ndarray
    used: np.ndarray
    n_queries_used: int
    n_queries_total: int
    topk: int | None
    zero_hit: str


@dataclass(frozen=True)
class PrecisionAtK:
    """topK-precision curve: mean over counted queries of (relevant in top k) / k."""

    k: np.ndarray
    precision: np.ndarray
    n_queries_used: int


@dataclass(frozen=True)
class PRCurve:
    """Precision and recall of the items within Hamming radius ``0..r`` (means over queries)."""

    radius: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    n_queries_used: int


@dataclass(frozen=True)
class RetrievalResult:
    """Everything one evaluation computes, from a single pass over the ranking."""

    map: MAPResult
    precision_at_k: PrecisionAtK
    pr_radius: PRCurve | None


def default_pk_grid(n_db: int | None = None, k_max: int = 5000, step: int = 50) -> np.ndarray:
    """K grid of the topK-precision curve: ``1, 50, 100, ..., 5000``, clipped to ``n_db``.

    Example:
        >>> default_pk_grid(120).tolist()
        [1, 50, 100, 120]
    """
    grid = np.concatenate([[1], np.arange(step, k_max + 1, step)]).astype(np.int64)
    return _clip_grid(grid, n_db)


def _clip_grid(ks: Sequence[int] | np.ndarray, n_db: int | None) -> np.ndarray:
    ks = np.asarray(ks, dtype=np.int64).ravel()
    if ks.size == 0 or np.any(ks < 1):
        raise ValueError(f"precision@k grid must hold positive integers, got {ks.tolist()}")
    if n_db is not None:
        ks = np.minimum(ks, n_db)
    return np.unique(ks)


def _check_zero_hit(zero_hit: str) -> None:
    if zero_hit not in ZERO_HIT_MODES:
        raise ValueError(f"zero_hit must be one of {ZERO_HIT_MODES}, got {zero_hit!r}")


def _check_topk(topk: int | None) -> None:
    if topk is not None and (int(topk) != topk or topk < 1):
        raise ValueError(f"topk must be a positive integer or None (all), got {topk!r}")


def pack_labels(labels: np.ndarray) -> np.ndarray:
    """Pack 0/1 label rows ``(N, C)`` into ``uint64`` bit sets ``(N, ceil(C / 64))``.

    Raises:
        ValueError: if ``labels`` is not two-dimensional or holds values other than 0/1.

    Example:
        >>> pack_labels(np.array([[1, 0, 1]], np.uint8)).shape
        (1, 1)
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must have shape (N, C), got {labels.shape}")
    if labels.dtype != np.bool_:
        if labels.size and (labels.min() < 0 or labels.max() > 1):
            raise ValueError("labels must be 0/1 (multi-hot), found other values")
        labels = labels.astype(bool)
    packed = np.packbits(labels, axis=1)
    n_words = max(1, -(-packed.shape[1] // 8))
    out = np.zeros((labels.shape[0], n_words * 8), np.uint8)
    out[:, : packed.shape[1]] = packed
    return out.view(np.uint64)


def relevance(q_label_bits: np.ndarray, db_label_bits: np.ndarray,
              indices: np.ndarray) -> np.ndarray:
    """Relevance of ranked lists: ``rel[i, j]`` = query ``i`` shares a label with ``indices[i, j]``.

    Args:
        q_label_bits: ``uint64 (c, W)`` from :func:`pack_labels`.
        db_label_bits: ``uint64 (N, W)`` from :func:`pack_labels`.
        indices: ``int (c, k)`` database rows.

    Returns:
        ``bool (c, k)``.
    """
    rel = (db_label_bits[:, 0][indices] & q_label_bits[:, 0:1]) != 0
    for w in range(1, db_label_bits.shape[1]):
        rel |= (db_label_bits[:, w][indices] & q_label_bits[:, w:w + 1]) != 0
    return rel


def _has_relevant(q_label_bits: np.ndarray, db_label_bits: np.ndarray) -> np.ndarray:
    # a query has a relevant item iff it shares a bit with the union of all database labels
    union = np.bitwise_or.reduce(db_label_bits, axis=0)
    return np.any(q_label_bits & union[None, :], axis=1)


def _ap_rows(rel: np.ndarray) -> np.ndarray:
    rel = np.atleast_2d(rel)
    if rel.shape[1] == 0:
        return np.zeros(rel.shape[0])
    hits = np.cumsum(rel, axis=1, dtype=np.int64)
    prec = hits / np.arange(1, rel.shape[1] + 1, dtype=np.float64)
    total = hits[:, -1]
    sum_prec = np.where(rel, prec, 0.0).sum(axis=1)
    return np.divide(sum_prec, total, out=np.zeros(len(total)), where=total > 0)


def average_precision_at_k(relevance: np.ndarray, k: int | None = None) -> np.ndarray | float:
    r"""AP@K of ranked lists from their relevance (the ranking is already applied).

    .. math::
        \mathrm{AP@K} = \frac{1}{R_K}\sum_{i \le K} \mathrm{rel}_i\, P@i,

    where :math:`R_K` is the number of relevant items in the top K. A list without a relevant
    item in its top K has AP 0.

    Args:
        relevance: ``bool`` ranked relevance, ``(L,)`` for one list or ``(Q, L)`` for many.
        k: cut-off K (default: the whole list).

    Returns:
        A float for one list, ``float64 (Q,)`` for many.

    Raises:
        ValueError: on ``k < 1`` or more than two dimensions.

    Example:
        >>> round(float(average_precision_at_k(np.array([True, False, True]))), 4)  # (1 + 2/3) / 2
        0.8333
        >>> float(average_precision_at_k(np.array([False, True]), k=1))
        0.0
    """
    rel = np.asarray(relevance).astype(bool, copy=False)
    if rel.ndim not in (1, 2):
        raise ValueError(f"relevance must be (L,) or (Q, L), got shape {rel.shape}")
    _check_topk(k)
    out = _ap_rows(rel[..., :k] if k is not None else rel)
    return float(out[0]) if rel.ndim == 1 else out


def _check_inputs(q_codes: np.ndarray, db_codes: np.ndarray, q_labels: np.ndarray,
                  db_labels: np.ndarray, bits: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    q = _as_packed(q_codes, bits)
    db = _as_packed(db_codes, bits)
    if q.shape[1] != db.shape[1]:
        raise ValueError(f"query codes have {q.shape[1]} bytes per row, database codes "
                         f"{db.shape[1]}")
    _check_labels(q, db, q_labels, db_labels)
    return q, db, (8 * q.shape[1] if bits is None else int(bits))


def _as_packed(codes: np.ndarray, bits: int | None) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.dtype == np.bool_:
        if bits is not None and codes.shape[-1] != bits:
            raise ValueError(f"bool codes have {codes.shape[-1]} bits, expected {bits}")
        return np.packbits(codes, axis=1)
    return check_packed(codes, bits)


def _check_labels(q: np.ndarray, db: np.ndarray, q_labels: np.ndarray,
                  db_labels: np.ndarray) -> None:
    ql, dl = np.asarray(q_labels), np.asarray(db_labels)
    if ql.ndim != 2 or dl.ndim != 2:
        raise ValueError(f"labels must be (N, C); got {ql.shape} and {dl.shape}")
    if len(ql) != len(q) or len(dl) != len(db):
        raise ValueError(f"labels rows do not match codes rows: queries {len(ql)} vs {len(q)}, "
                         f"database {len(dl)} vs {len(db)}")
    if ql.shape[1] != dl.shape[1]:
        raise ValueError(f"query labels have {ql.shape[1]} classes, database {dl.shape[1]}")


def _used(has_rel: np.ndarray, zero_hit: str) -> np.ndarray:
    return has_rel.copy() if zero_hit == "drop" else np.ones_like(has_rel)


def _reduce(q_bits: np.ndarray, db_bits: np.ndarray, topk: int | None, ks: np.ndarray,
            zero_hit: str, run) -> tuple[MAPResult, PrecisionAtK]:
    """Shared reduction: ``run(fn)`` streams (start, indices, _) chunks of the ranking."""
    n_db = len(db_bits)
    k_map = n_db if topk is None else min(int(topk), n_db)

    def per_chunk(start: int, idx: np.ndarray, _dist: np.ndarray):
        rel = relevance(q_bits[start:start + len(idx)], db_bits, idx)
        ap = _ap_rows(rel[:, :k_map])
        hits = np.cumsum(rel, axis=1, dtype=np.int64)[:, ks - 1] if len(ks) else None
        return ap, hits

    parts = run(max(k_map, int(ks.max()) if len(ks) else 0), per_chunk)
    n_q = len(q_bits)
    ap = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0)
    used = _used(_has_relevant(q_bits, db_bits), zero_hit)
    n_used = int(used.sum())
    mean = float(ap[used].mean()) if n_used else float("nan")
    res = MAPResult(mean, ap, used, n_used, n_q, topk, zero_hit)
    if len(ks) and parts:
        hits = np.concatenate([p[1] for p in parts])
        prec = hits[used].sum(axis=0) / (max(n_used, 1) * ks.astype(np.float64))
        if not n_used:
            prec[:] = np.nan
    else:
        prec = np.full(len(ks), np.nan)
    return res, PrecisionAtK(ks, prec, n_used)


def mean_average_precision(q_codes: np.ndarray, db_codes: np.ndarray, q_labels: np.ndarray,
                           db_labels: np.ndarray, topk: int | None = DEFAULT_TOPK,
                           zero_hit: str = "drop", *, bits: int | None = None,
                           chunk: int | None = None, threads: int | None = None,
                           device: str | None = None) -> MAPResult:
    r"""MAP@K of Hamming ranking (paper Table 3 uses K = 1000).

    Each query ranks the whole retrieval set by Hamming distance, ties by database index
    ascending; AP@K is computed on the first K items (see the module docstring).

    Args:
        q_codes: query codes, packed ``uint8 (Q, ceil(r/8))`` or ``bool (Q, r)``.
        db_codes: retrieval-set codes, same format ``(N, ...)``.
        q_labels: ``uint8 (Q, C)`` 0/1 ground-truth labels of the queries.
        db_labels: ``uint8 (N, C)`` labels of the retrieval set.
        topk: K of MAP@K (default: ``1000``); ``None`` ranks the whole retrieval set (MAP@all).
        zero_hit: ``"drop"`` (default) leaves out queries with no relevant item in the whole
            retrieval set; ``"zero"`` counts them as AP 0.
        bits: code length ``r`` when codes are packed (checks width and zero padding).
        chunk, threads, device: see :func:`pipeline.retrieval.hamming.hamming_topk`.

    Returns:
        :class:`MAPResult`.

    Raises:
        ValueError: on mismatched shapes, an unknown ``zero_hit`` or a bad ``topk``.

    Example:
        >>> from pipeline.codes import pack_codes
        >>> db = pack_codes(np.array([[0, 0], [1, 1], [1, 0]], bool))
        >>> q = pack_codes(np.array([[0, 0]], bool))
        >>> # ranking by distance: rows 0 (d=0), 2 (d=1), 1 (d=2); relevant: rows 0 and 1
        >>> ql, dbl = np.array([[1, 0]], np.uint8), np.array([[1, 0], [1, 1], [0, 1]], np.uint8)
        >>> r = mean_average_precision(q, db, ql, dbl, topk=None, bits=2, device="numpy")
        >>> round(r.map, 4)  # (1/1 + 2/3) / 2
        0.8333
    """
    _check_zero_hit(zero_hit)
    _check_topk(topk)
    q, db, _ = _check_inputs(q_codes, db_codes, q_labels, db_labels, bits)
    res, _ = _reduce(pack_labels(q_labels), pack_labels(db_labels), topk,
                     np.zeros(0, np.int64), zero_hit,
                     lambda k, fn: map_topk_chunks(q, db, k, fn, chunk=chunk, threads=threads,
                                                   device=device))
    return res


def precision_at_k_curve(q_codes: np.ndarray, db_codes: np.ndarray, q_labels: np.ndarray,
                         db_labels: np.ndarray, ks: Sequence[int] | np.ndarray | None = None,
                         zero_hit: str = "drop", *, bits: int | None = None,
                         chunk: int | None = None, threads: int | None = None,
                         device: str | None = None) -> PrecisionAtK:
    r"""topK-precision curve of Hamming ranking (paper Fig. 2).

    :math:`P@k = \frac{1}{k}\sum_{i \le k} \mathrm{rel}_i`, averaged over the queries that count
    under ``zero_hit`` (the same queries as :func:`mean_average_precision`).

    Args:
        q_codes, db_codes, q_labels, db_labels, bits, chunk, threads, device: as in
            :func:`mean_average_precision`.
        ks: K values (default :func:`default_pk_grid`: 1, 50, ..., 5000); values above the
            retrieval-set size are clipped to it and duplicates removed.
        zero_hit: ``"drop"`` or ``"zero"``.

    Returns:
        :class:`PrecisionAtK`.

    Example:
        >>> from pipeline.codes import pack_codes
        >>> db = pack_codes(np.array([[0, 0], [1, 1], [1, 0]], bool))
        >>> q = pack_codes(np.array([[0, 0]], bool))
        >>> ql, dbl = np.array([[1, 0]], np.uint8), np.array([[1, 0], [1, 1], [0, 1]], np.uint8)
        >>> precision_at_k_curve(q, db, ql, dbl, ks=[1, 2, 3], bits=2).precision.round(4).tolist()
        [1.0, 0.5, 0.6667]
    """
    _check_zero_hit(zero_hit)
    q, db, _ = _check_inputs(q_codes, db_codes, q_labels, db_labels, bits)
    grid = default_pk_grid(len(db)) if ks is None else _clip_grid(ks, len(db))
    _, pk = _reduce(pack_labels(q_labels), pack_labels(db_labels), 1, grid, zero_hit,
                    lambda k, fn: map_topk_chunks(q, db, k, fn, chunk=chunk, threads=threads,
                                                  device=device))
    return pk


def precision_recall_hamming_radius(q_codes: np.ndarray, db_codes: np.ndarray,
                                    q_labels: np.ndarray, db_labels: np.ndarray,
                                    zero_hit: str = "drop", *, bits: int | None = None,
                                    chunk: int | None = None, threads: int | None = None,
                                    device: str | None = None) -> PRCurve:
    r"""Precision and recall of hash lookup within Hamming radius ``t = 0, 1, ..., r``.

    For query :math:`q` and radius :math:`t`, with :math:`n_t` items at distance :math:`\le t`
    of which :math:`m_t` are relevant, and :math:`R` relevant items in the retrieval set:
    :math:`\mathrm{precision} = m_t / n_t` (**defined as 0 when** :math:`n_t = 0`, the usual
    "failed lookup counts as zero precision" convention of hash-lookup evaluation) and
    :math:`\mathrm{recall} = m_t / R` (0 when :math:`R = 0`, which only matters under
    ``zero_hit="zero"``). Both are averaged over the queries that count under ``zero_hit``.

    Args:
        q_codes, db_codes, q_labels, db_labels, chunk, threads, device: as in
            :func:`mean_average_precision`.
        zero_hit: ``"drop"`` or ``"zero"``.
        bits: code length ``r`` (default ``8 * nbytes``): radii run ``0..r``.

    Returns:
        :class:`PRCurve` with ``r + 1`` points.

    Example:
        >>> from pipeline.codes import pack_codes
        >>> db = pack_codes(np.array([[0, 0], [1, 1], [1, 0]], bool))
        >>> q = pack_codes(np.array([[0, 0]], bool))
        >>> ql, dbl = np.array([[1, 0]], np.uint8), np.array([[1, 0], [1, 1], [0, 1]], np.uint8)
        >>> pr = precision_recall_hamming_radius(q, db, ql, dbl, bits=2)
        >>> pr.precision.round(4).tolist(), pr.recall.tolist()  # radius 0, 1, 2
        ([1.0, 0.5, 0.6667], [0.5, 0.5, 1.0])
    """
    _check_zero_hit(zero_hit)
    q, db, r = _check_inputs(q_codes, db_codes, q_labels, db_labels, bits)
    return _pr_radius(q, db, pack_labels(q_labels), pack_labels(db_labels), r, zero_hit,
                      chunk=chunk, threads=threads, device=device)


def _pr_radius(q: np.ndarray, db: np.ndarray, q_bits: np.ndarray, db_bits: np.ndarray, r: int,
               zero_hit: str, *, chunk: int | None, threads: int | None,
               device: str | None) -> PRCurve:
    nv = r + 1
    db_words = [np.ascontiguousarray(db_bits[:, w]) for w in range(db_bits.shape[1])]

    def per_chunk(start: int, D: np.ndarray):
        c = len(D)
        qb = q_bits[start:start + c]
        rel = (db_words[0][None, :] & qb[:, 0:1]) != 0
        for w in range(1, len(db_words)):
            rel |= (db_words[w][None, :] & qb[:, w:w + 1]) != 0
        if D.size and int(D.max()) > r:
            raise ValueError(f"a Hamming distance exceeds bits={r}; wrong code length")
        # one histogram of (row, distance, relevant) keys gives both counts
        keys = D.astype(np.intp)
        keys += (np.arange(c, dtype=np.intp) * nv)[:, None]
        keys *= 2
        keys += rel
        h = np.bincount(keys.ravel(), minlength=2 * c * nv).reshape(c, nv, 2)
        h_rel = h[:, :, 1]
        h_all = h_rel + h[:, :, 0]
        return h_all, h_rel

    parts = map_distance_chunks(q, db, per_chunk, chunk=chunk, threads=threads, device=device)
    n_ret = np.cumsum(np.concatenate([p[0] for p in parts]), axis=1)
    n_rel_ret = np.cumsum(np.concatenate([p[1] for p in parts]), axis=1)
    total_rel = n_rel_ret[:, -1]
    used = _used(total_rel > 0, zero_hit)
    prec = np.divide(n_rel_ret, n_ret, out=np.zeros(n_ret.shape), where=n_ret > 0)
    rec = np.divide(n_rel_ret, total_rel[:, None], out=np.zeros(n_ret.shape),
                    where=total_rel[:, None] > 0)
    n_used = int(used.sum())
    if n_used:
        p_mean, r_mean = prec[used].mean(axis=0), rec[used].mean(axis=0)
    else:
        p_mean = r_mean = np.full(nv, np.nan)
    return PRCurve(np.arange(nv), p_mean, r_mean, n_used)


def evaluate_retrieval(q_codes: np.ndarray, db_codes: np.ndarray, q_labels: np.ndarray,
                       db_labels: np.ndarray, *, topk: int | None = DEFAULT_TOPK,
                       ks: Sequence[int] | np.ndarray | None = None, zero_hit: str = "drop",
                       pr: bool = True, bits: int | None = None, chunk: int | None = None,
                       threads: int | None = None, device: str | None = None
                       ) -> RetrievalResult:
    """MAP@K, topK-precision and (optionally) PR within Hamming radius in one ranking pass.

    Same arguments and conventions as :func:`mean_average_precision`,
    :func:`precision_at_k_curve` and :func:`precision_recall_hamming_radius`.
    """
    _check_zero_hit(zero_hit)
    _check_topk(topk)
    q, db, r = _check_inputs(q_codes, db_codes, q_labels, db_labels, bits)
    grid = default_pk_grid(len(db)) if ks is None else _clip_grid(ks, len(db))
    q_bits, db_bits = pack_labels(q_labels), pack_labels(db_labels)
    res, pk = _reduce(q_bits, db_bits, topk, grid, zero_hit,
                      lambda k, fn: map_topk_chunks(q, db, k, fn, chunk=chunk, threads=threads,
                                                    device=device))
    curve = (_pr_radius(q, db, q_bits, db_bits, r, zero_hit, chunk=chunk, threads=threads,
                        device=device) if pr else None)
    return RetrievalResult(res, pk, curve)


# --------------------------------------------------------------------------- float ceiling


def _row_sq_norms(x: np.ndarray, block: int = 1024) -> np.ndarray:
    """Squared row norms accumulated in float64, block by block (no full float64 copy)."""
    out = np.empty(len(x), np.float64)
    for s in range(0, len(x), block):
        b = x[s:s + block].astype(np.float64)
        out[s:s + block] = np.einsum("ij,ij->i", b, b)
    return out


def _float_topk_chunks(q: np.ndarray, db: np.ndarray, k: int, fn, *, chunk: int,
                       dtype: np.dtype) -> list:
    """Stable top-k by squared Euclidean distance, ties (exact equality) by index.

    The dot products run in ``dtype`` (the features' float32 by default, so the database is
    not copied); norms and the distance sum are float64.
    """
    db = np.asarray(db)
    if db.dtype != dtype:
        db = db.astype(dtype)
    q = np.asarray(q, dtype=dtype)
    db_sq = _row_sq_norms(db)
    q_sq = _row_sq_norms(q)
    n = len(db)
    out = []
    for s in range(0, len(q), chunk):
        qc = q[s:s + chunk]
        d = (qc @ db.T).astype(np.float64, copy=False)
        d *= -2.0
        d += db_sq[None, :]
        d += q_sq[s:s + chunk, None]
        if k >= n:
            idx = np.argsort(d, axis=1, kind="stable")
        else:
            kth = np.partition(d, k - 1, axis=1)[:, k - 1]
            idx = np.empty((len(qc), k), np.int64)
            for i in range(len(qc)):
                cand = np.flatnonzero(d[i] <= kth[i])  # every item of the top k, index order
                idx[i] = cand[np.argsort(d[i, cand], kind="stable")[:k]]
        out.append(fn(s, idx, np.take_along_axis(d, idx, 1)))
    return out


def _check_float(q_feats: np.ndarray, db_feats: np.ndarray) -> None:
    qf, df = np.asarray(q_feats), np.asarray(db_feats)
    if qf.ndim != 2 or df.ndim != 2 or qf.shape[1] != df.shape[1]:
        raise ValueError(f"features must be (Q, D) and (N, D); got {qf.shape} and {df.shape}")
    if len(df) == 0:
        raise ValueError("the database (retrieval set) is empty")
    if not (_all_finite(qf) and _all_finite(df)):
        raise ValueError("features contain NaN or inf")


def _all_finite(a: np.ndarray, block: int = 4096) -> bool:
    """``np.isfinite(a).all()`` a block of rows at a time (no array-sized temporary)."""
    return all(bool(np.isfinite(a[s:s + block]).all()) for s in range(0, len(a), block))


def evaluate_retrieval_float(q_feats: np.ndarray, db_feats: np.ndarray, q_labels: np.ndarray,
                             db_labels: np.ndarray, *, topk: int | None = DEFAULT_TOPK,
                             ks: Sequence[int] | np.ndarray | None = None,
                             zero_hit: str = "drop", chunk: int = 256,
                             dtype: str | np.dtype = "float32") -> RetrievalResult:
    r"""MAP@K and topK-precision of Euclidean ranking of real-valued features (the ceiling).

    Squared distances :math:`\|q\|^2 + \|x\|^2 - 2 q^\top x` with dot products in ``dtype``
    (default ``float32``: the features' own precision, no copy of the database; use
    ``"float64"`` to order near-ties exactly, at twice the memory) and float64 sums; ties by
    database index. ``pr_radius`` is ``None``.
    """
    _check_zero_hit(zero_hit)
    _check_topk(topk)
    _check_float(q_feats, db_feats)
    _check_labels(np.asarray(q_feats), np.asarray(db_feats), q_labels, db_labels)
    n_db = len(db_feats)
    grid = default_pk_grid(n_db) if ks is None else _clip_grid(ks, n_db)
    res, pk = _reduce(pack_labels(q_labels), pack_labels(db_labels), topk, grid, zero_hit,
                      lambda k, fn: _float_topk_chunks(q_feats, db_feats, min(k, n_db), fn,
                                                       chunk=chunk, dtype=np.dtype(dtype)))
    return RetrievalResult(res, pk, None)


def mean_average_precision_float(q_feats: np.ndarray, db_feats: np.ndarray,
                                 q_labels: np.ndarray, db_labels: np.ndarray,
                                 topk: int | None = DEFAULT_TOPK, zero_hit: str = "drop", *,
                                 chunk: int = 256, dtype: str | np.dtype = "float32"
                                 ) -> MAPResult:
    """MAP@K of Euclidean ranking of real-valued features: the ceiling for hashing methods.

    Args:
        q_feats: ``float (Q, D)`` query features.
        db_feats: ``float (N, D)`` retrieval-set features.
        q_labels, db_labels, topk, zero_hit: as in :func:`mean_average_precision`.
        chunk: queries per chunk (memory ``chunk * N`` distances).
        dtype: precision of the dot products (default ``float32``; see
            :func:`evaluate_retrieval_float`).

    Returns:
        :class:`MAPResult`.

    Example:
        >>> db = np.array([[0.0], [3.0], [1.0]])
        >>> ql, dbl = np.array([[1, 0]], np.uint8), np.array([[1, 0], [1, 1], [0, 1]], np.uint8)
        >>> round(mean_average_precision_float(np.array([[0.0]]), db, ql, dbl, topk=None).map, 4)
        0.8333
    """
    return evaluate_retrieval_float(q_feats, db_feats, q_labels, db_labels, topk=topk,
                                    ks=[1], zero_hit=zero_hit, chunk=chunk, dtype=dtype).map
