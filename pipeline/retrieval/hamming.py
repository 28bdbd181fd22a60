r"""Exact Hamming ranking of packed binary codes: distances and a stable top-K.

The Hamming distance of two ``r``-bit codes is the number of differing bits,

.. math::
    d_H(\mathbf{b}_q, \mathbf{b}_j) = \operatorname{popcount}(\mathbf{b}_q \oplus \mathbf{b}_j)
    = \tfrac{1}{2}\,(r - \mathbf{b}_q^\top \mathbf{b}_j)
    \quad\text{for } \mathbf{b} \in \{-1, +1\}^r ,

computed here by XOR and popcount (:func:`numpy.bitwise_count`) over machine words: the packed
``uint8`` rows (see :mod:`pipeline.codes`) are viewed as ``uint64`` words when the code has a
multiple of 64 bits, as one word of 1, 2, 4 or 8 bytes when it fits in 8 bytes (padded with zero
bytes, which XOR to zero), and as zero-padded ``uint64`` words otherwise.

**Tie rule.** Distances take only ``r + 1`` values, so ties are the rule, not the exception.
A ranking is the order by ``(distance, database index)``: equal distances are ordered by database
index ascending, which is what a stable sort of the distances gives (the authors' MATLAB
evaluation). :func:`hamming_topk` returns exactly that order's first ``k`` items, without sorting
the whole database: per query it guesses a distance cutoff ``t`` from a strided sample, counts
exactly how many items lie at distance ``<= t`` (raising ``t`` one value at a time while fewer
than ``k`` do), collects those items in index order and sorts them stably by distance (a radix
sort, as the keys are small integers). Everything is chunked over queries, so memory is
``O(chunk * N)`` per thread.

Queries are processed in chunks on a small thread pool (numpy releases the GIL in its loops).
When CUDA is available, or when a torch ``device`` is given, the same ranking is computed with
torch: a SWAR popcount on ``int64`` words and ``torch.topk`` on the unique key
``distance * N + index``, which reproduces the stable order exactly.

Shapes:
    - **q_packed:** ``(Q, nbytes)`` ``uint8``; **db_packed:** ``(N, nbytes)`` ``uint8``
    - **indices:** ``(Q, k)`` ``int64``; **distances:** ``(Q, k)`` ``int32``
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from pipeline.codes import check_packed

__all__ = [
    "DEFAULT_CHUNK",
    "code_words",
    "default_threads",
    "hamming_distance",
    "hamming_topk",
    "map_topk_chunks",
    "map_distance_chunks",
    "resolve_device",
]

#: queries per chunk on the CPU path (a chunk holds ``chunk * N`` one-byte distances)
DEFAULT_CHUNK = 16
#: elements per chunk on the torch path (``int64`` keys: 8 bytes each)
_TORCH_CHUNK_ELEMS = 1 << 25

T = TypeVar("T")


def default_threads() -> int:
    """Worker threads for the CPU path: the cores this process may use, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def code_words(packed: np.ndarray) -> np.ndarray:
    """View packed ``uint8`` codes ``(N, nbytes)`` as unsigned machine words ``(N, W)``.

    Rows are padded on the right with zero bytes up to the word size (zero bytes XOR to zero
    and add nothing to any distance).

    Args:
        packed: ``uint8 (N, nbytes)`` packed codes.

    Returns:
        C-contiguous array ``(N, W)`` of ``uint64`` words when ``nbytes`` is a multiple of 8 or
        larger than 8, else a single word of ``uint8``/``uint16``/``uint32``/``uint64``.

    Example:
        >>> code_words(np.zeros((5, 8), np.uint8)).dtype
        dtype('uint64')
        >>> code_words(np.zeros((5, 3), np.uint8)).dtype  # 3 bytes: one 4-byte word
        dtype('uint32')
    """
    packed = check_packed(packed)
    nb = packed.shape[1]
    if nb % 8 == 0 or nb > 8:
        width = 8
    else:
        width = next(w for w in (1, 2, 4, 8) if w >= nb)
    n_words = -(-nb // width)
    if n_words * width != nb:
        padded = np.zeros((packed.shape[0], n_words * width), np.uint8)
        padded[:, :nb] = packed
        packed = padded
    return np.ascontiguousarray(packed).view(np.dtype(f"u{width}")).reshape(len(packed), n_words)


def _dist_dtype(nbytes: int) -> np.dtype:
    return np.dtype(np.uint8) if 8 * nbytes <= 255 else np.dtype(np.uint16)


def resolve_device(device: str | None) -> str | None:
    """``None`` → ``"cuda"`` when torch sees a GPU, else the numpy path (returned as ``None``).

    ``"numpy"`` forces the CPU numpy path; any other string is a torch device (``"cuda:1"``, or
    ``"cpu"`` for torch on the CPU, which is slower than numpy and meant for tests).
    """
    if device == "numpy":
        return None
    if device is not None:
        return device
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    return "cuda" if torch.cuda.is_available() else None


def _check_pair(q_packed: np.ndarray, db_packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q = check_packed(q_packed)
    db = check_packed(db_packed)
    if q.shape[1] != db.shape[1]:
        raise ValueError(f"query codes have {q.shape[1]} bytes per row but database codes have "
                         f"{db.shape[1]}; they must come from the same code length")
    if len(db) == 0:
        raise ValueError("the database (retrieval set) is empty")
    return q, db


def _run_chunks(n: int, chunk: int, threads: int, fn: Callable[[int, int], T]) -> list[T]:
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    starts = list(range(0, n, chunk))
    if threads <= 1 or len(starts) <= 1:
        return [fn(s, min(s + chunk, n)) for s in starts]
    with ThreadPoolExecutor(max_workers=min(threads, len(starts))) as ex:
        return list(ex.map(lambda s: fn(s, min(s + chunk, n)), starts))


class _CpuRanker:
    """Per-thread buffers and the numpy kernels of the CPU path."""

    def __init__(self, q: np.ndarray, db: np.ndarray) -> None:
        self.nbytes = q.shape[1]
        self.qw = code_words(q)
        # word-major database: each word column contiguous for the XOR loop
        self.dbw = np.ascontiguousarray(code_words(db).T)
        self.n = db.shape[0]
        self.ddtype = _dist_dtype(self.nbytes)
        self.n_values = 8 * self.nbytes + 1  # padding bytes add nothing
        self._local = threading.local()

    def _buffers(self, rows: int) -> dict[str, np.ndarray]:
        buf = getattr(self._local, "buf", None)
        if buf is None or buf["D"].shape[0] < rows:
            buf = {
                "D": np.empty((rows, self.n), self.ddtype),
                "M": np.empty((rows, self.n), np.bool_),
                "x": np.empty(self.n, self.dbw.dtype),
                "p": np.empty(self.n, np.uint8),
            }
            self._local.buf = buf
        return buf

    def distances(self, start: int, stop: int) -> np.ndarray:
        """Distances of queries ``start:stop`` to the whole database (a per-thread buffer)."""
        buf = self._buffers(stop - start)
        D, x, p = buf["D"][: stop - start], buf["x"], buf["p"]
        n_words = self.dbw.shape[0]
        for i, row in enumerate(range(start, stop)):
            q = self.qw[row]
            np.bitwise_xor(self.dbw[0], q[0], out=x)
            np.bitwise_count(x, out=D[i] if self.ddtype == np.uint8 else p)
            if self.ddtype != np.uint8:
                D[i] = p
            for w in range(1, n_words):
                np.bitwise_xor(self.dbw[w], q[w], out=x)
                np.bitwise_count(x, out=p)
                np.add(D[i], p, out=D[i])
        return D

    def topk(self, start: int, stop: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        D = self.distances(start, stop)
        c, n = D.shape
        if k >= n:
            order = np.argsort(D, axis=1, kind="stable")
            return order.astype(np.int64, copy=False), np.take_along_axis(D, order, 1)
        return _select_topk(D, k, self.n_values, self._buffers(c)["M"][:c])


def _cutoff_estimate(D: np.ndarray, k: int) -> np.ndarray:
    """Per-row guess of the k-th smallest distance from a strided sample of each row."""
    n = D.shape[1]
    step = int(np.clip(k // 64, 1, 16))
    sample = np.sort(D[:, ::step], axis=1, kind="stable")  # radix sort of small integers
    j = min(-(-k // step) - 1, sample.shape[1] - 1, n - 1)
    return sample[:, j]


def _select_topk(D: np.ndarray, k: int, n_values: int,
                 M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact stable top-k of every row of ``D`` by counting, vectorised over the chunk.

    1. a cutoff ``t`` per row guessed from a sample; the candidates ``d <= t`` of all rows are
       collected in (row, index) order by one ``flatnonzero``;
    2. where the exact count shows fewer than ``k`` candidates, the row's cutoff is raised one
       distance value at a time and the items at that distance are appended (in index order);
    3. a stable radix sort of the candidates by ``(row, distance)`` puts each row's items in
       (distance, index) order, since items of equal (row, distance) were collected in index
       order; the first ``k`` of each row are its top-k.
    """
    c, n = D.shape
    t = _cutoff_estimate(D, k)
    np.less_equal(D, t[:, None], out=M)
    flat = np.flatnonzero(M)
    bounds = np.searchsorted(flat, np.arange(c + 1, dtype=np.int64) * n)
    counts = np.diff(bounds)
    rows = np.repeat(np.arange(c, dtype=np.int64), counts)
    low = np.flatnonzero(counts < k)
    if len(low):  # the guess was low for these rows: add the next distance values
        extra_flat, extra_rows = [flat], [rows]
        for i in low:
            ti, m = int(t[i]), M[i]
            while counts[i] < k:
                ti += 1
                np.equal(D[i], ti, out=m)
                more = np.flatnonzero(m)
                counts[i] += len(more)
                extra_flat.append(more + i * n)
                extra_rows.append(np.full(len(more), i, np.int64))
        flat, rows = np.concatenate(extra_flat), np.concatenate(extra_rows)
    dist = D.ravel()[flat]
    key_t = np.uint16 if c * n_values <= np.iinfo(np.uint16).max else np.uint32
    key = rows.astype(key_t)
    key *= key_t(n_values)
    key += dist
    order = np.argsort(key, kind="stable")  # radix sort for 16-bit keys
    starts = np.zeros(c, np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    take = order[starts[:, None] + np.arange(k)]
    return flat[take] - rows[take] * n, dist[take]


_M1, _M2, _M4 = 0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F


def _popcount64(x: Any) -> Any:
    """SWAR popcount of an ``int64`` torch tensor (exact for all 64 bits, sign bit included)."""
    x = x - ((x >> 1) & _M1)
    x = (x & _M2) + ((x >> 2) & _M2)
    x = (x + (x >> 4)) & _M4  # per-byte counts, top bit of every byte clear: x >= 0
    x = x + (x >> 8)
    x = x + (x >> 16)
    x = x + (x >> 32)
    return x & 0x7F


class _TorchRanker:
    """The torch path (CUDA, or ``device="cpu"`` in tests): same ranking, same tie rule."""

    def __init__(self, q: np.ndarray, db: np.ndarray, device: str) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.qw = self._to_torch(code_words(q))
        self.dbw = self._to_torch(code_words(db))
        self.n = db.shape[0]
        self.ddtype = _dist_dtype(q.shape[1])

    def _to_torch(self, words: np.ndarray) -> Any:
        arr = words.view(np.int64) if words.dtype == np.uint64 else words.astype(np.int64)
        return self.torch.from_numpy(np.ascontiguousarray(arr)).to(self.device)

    def _dist(self, start: int, stop: int) -> Any:
        q = self.qw[start:stop]
        d = None
        for w in range(q.shape[1]):
            part = _popcount64(q[:, w:w + 1] ^ self.dbw[:, w][None, :])
            d = part if d is None else d + part
        return d

    def distances(self, start: int, stop: int) -> np.ndarray:
        return self._dist(start, stop).cpu().numpy().astype(self.ddtype)

    def topk(self, start: int, stop: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        torch = self.torch
        d = self._dist(start, stop)
        key = d * self.n + torch.arange(self.n, device=self.device)[None, :]
        if k >= self.n:
            vals, idx = torch.sort(key, dim=1)
        else:
            vals, idx = torch.topk(key, k, dim=1, largest=False, sorted=True)
        return (idx.cpu().numpy().astype(np.int64, copy=False),
                (vals // self.n).cpu().numpy().astype(self.ddtype))


def _ranker(q: np.ndarray, db: np.ndarray, device: str | None) -> _CpuRanker | _TorchRanker:
    device = resolve_device(device)
    return _CpuRanker(q, db) if device is None else _TorchRanker(q, db, device)


def _plan(ranker: _CpuRanker | _TorchRanker, chunk: int | None,
          threads: int | None) -> tuple[int, int]:
    if isinstance(ranker, _TorchRanker):
        auto = max(1, _TORCH_CHUNK_ELEMS // ranker.n)
        return (chunk or auto), 1
    return (chunk or DEFAULT_CHUNK), (threads or default_threads())


def map_topk_chunks(q_packed: np.ndarray, db_packed: np.ndarray, k: int | None,
                    fn: Callable[[int, np.ndarray, np.ndarray], T], *,
                    chunk: int | None = None, threads: int | None = None,
                    device: str | None = None) -> list[T]:
    """Apply ``fn(start, indices, distances)`` to the stable top-``k`` of each query chunk.

    This is the streaming form of :func:`hamming_topk`: metrics reduce each chunk to a few
    numbers inside ``fn`` (which runs in a worker thread), so the full ranking never exists.

    Args:
        q_packed: ``uint8 (Q, nbytes)`` query codes.
        db_packed: ``uint8 (N, nbytes)`` database codes.
        k: list length; ``None`` (or ``k >= N``) ranks the whole database.
        fn: called once per chunk with the first query row of the chunk, ``indices (c, k)``
            ``int64`` and ``distances (c, k)``.
        chunk: queries per chunk (default :data:`DEFAULT_CHUNK` on CPU, ``2**25 / N`` on GPU).
        threads: worker threads on the CPU path (default :func:`default_threads`).
        device: see :func:`resolve_device`.

    Returns:
        The results of ``fn`` in chunk order.
    """
    q, db = _check_pair(q_packed, db_packed)
    kk = len(db) if k is None else int(k)
    if kk < 1:
        raise ValueError(f"k must be >= 1 (or None for the full ranking), got {k}")
    kk = min(kk, len(db))
    ranker = _ranker(q, db, device)
    chunk, threads = _plan(ranker, chunk, threads)

    def work(start: int, stop: int) -> T:
        idx, dist = ranker.topk(start, stop, kk)
        return fn(start, idx, dist)

    return _run_chunks(len(q), chunk, threads, work)


def map_distance_chunks(q_packed: np.ndarray, db_packed: np.ndarray,
                        fn: Callable[[int, np.ndarray], T], *, chunk: int | None = None,
                        threads: int | None = None, device: str | None = None) -> list[T]:
    """Apply ``fn(start, distances (c, N))`` to the full distance rows of each query chunk.

    ``distances`` may be a reused per-thread buffer: ``fn`` must not keep a reference to it.
    """
    q, db = _check_pair(q_packed, db_packed)
    ranker = _ranker(q, db, device)
    chunk, threads = _plan(ranker, chunk, threads)
    return _run_chunks(len(q), chunk, threads,
                       lambda s, e: fn(s, ranker.distances(s, e)))


def hamming_distance(q_packed: np.ndarray, db_packed: np.ndarray, *,
                     chunk: int | None = None, threads: int | None = None,
                     device: str | None = None) -> np.ndarray:
    """All pairwise Hamming distances ``(Q, N)`` (``uint8``, ``uint16`` beyond 255 bits).

    Args:
        q_packed: ``uint8 (Q, nbytes)`` packed query codes.
        db_packed: ``uint8 (N, nbytes)`` packed database codes.
        chunk, threads, device: see :func:`map_topk_chunks`.

    Returns:
        The full distance matrix; use :func:`hamming_topk` for large ``Q * N``.

    Example:
        >>> from pipeline.codes import pack_codes
        >>> a = pack_codes(np.array([[1, 0, 1, 1]], bool))
        >>> b = pack_codes(np.array([[1, 1, 1, 1], [0, 1, 0, 0]], bool))
        >>> hamming_distance(a, b, device="numpy")
        array([[1, 4]], dtype=uint8)
    """
    q, db = _check_pair(q_packed, db_packed)
    out = np.empty((len(q), len(db)), _dist_dtype(q.shape[1]))

    def put(start: int, d: np.ndarray) -> None:
        out[start:start + len(d)] = d

    map_distance_chunks(q, db, put, chunk=chunk, threads=threads, device=device)
    return out


def hamming_topk(q_packed: np.ndarray, db_packed: np.ndarray, k: int | None, *,
                 chunk: int | None = None, threads: int | None = None,
                 device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact stable Hamming top-``k``: the first ``k`` items in ``(distance, index)`` order.

    Args:
        q_packed: ``uint8 (Q, nbytes)`` packed query codes.
        db_packed: ``uint8 (N, nbytes)`` packed database codes (same width).
        k: number of items per query, clipped to ``N``; ``None`` is the full ranking (memory
            ``Q * N * 12`` bytes: prefer :func:`map_topk_chunks` for big inputs).
        chunk: queries per chunk (default :data:`DEFAULT_CHUNK`; memory ``~2 * chunk * N``
            bytes per thread on CPU).
        threads: CPU worker threads (default :func:`default_threads`).
        device: ``None`` auto (CUDA if available), ``"numpy"``, or a torch device string.

    Returns:
        ``(indices, distances)``: ``int64 (Q, k)`` database rows and ``int32 (Q, k)`` Hamming
        distances, sorted by distance, equal distances by index ascending.

    Raises:
        TypeError: if the codes are not ``uint8``.
        ValueError: on mismatched widths, an empty database or ``k < 1``.

    Example:
        >>> from pipeline.codes import pack_codes
        >>> q = pack_codes(np.array([[1, 1, 0, 0]], bool))
        >>> db = pack_codes(np.array([[0, 0, 1, 1], [1, 1, 0, 1], [1, 0, 0, 0], [1, 1, 0, 0]],
        ...                          bool))
        >>> idx, dist = hamming_topk(q, db, 3, device="numpy")
        >>> idx.tolist(), dist.tolist()  # rows 1 and 2 tie at distance 1: index order
        ([[3, 1, 2]], [[0, 1, 1]])
    """
    q, db = _check_pair(q_packed, db_packed)
    kk = len(db) if k is None else min(int(k), len(db))
    out_i = np.empty((len(q), max(kk, 0)), np.int64)
    out_d = np.empty((len(q), max(kk, 0)), np.int32)

    def put(start: int, idx: np.ndarray, dist: np.ndarray) -> None:
        out_i[start:start + len(idx)] = idx
        out_d[start:start + len(idx)] = dist

    map_topk_chunks(q, db, k, put, chunk=chunk, threads=threads, device=device)
    return out_i, out_d

