"""Scoring one codes file (or the float features) of a split: the evaluation JSON.

:func:`evaluate_codes_file` (the ``evaluate`` stage, :mod:`pipeline.stages.evaluate`) gives
MAP@K, topK-precision and PR within Hamming radius of one codes file;
:func:`evaluate_features_file` (the ``evaluate_float`` stage,
:mod:`pipeline.stages.evaluate_float`) gives the Euclidean float ceiling.

Queries are the ``split == 1`` rows of ``split.h5``, the retrieval set its ``split == 2`` rows.
A codes file holds exactly the query and retrieval rows of ``split.h5``, in its order (checked by
``ids``); a features file holds either every row of ``split.h5`` or those same rows. One rule for
every row of the table: rows flagged ``valid == 0`` (unreadable image: features.h5's flag,
copied into the codes file) are left out of queries and retrieval set alike, for codes as for
float features, and counted in the JSON (``n_invalid_excluded``).

The JSON (written atomically) holds ``method``, ``bits`` (``null`` for float), ``map``,
``topk`` (an integer or ``"all"``), ``zero_hit``, ``n_queries`` (counted), ``n_queries_total``,
``n_retrieval`` (valid rows), ``n_invalid_excluded``, ``code_bits`` (the code's width when it
differs from the column ``bits``), ``uses_aux`` (the row reads the auxiliary labels),
``selected`` (settings the method chose on a validation split of the training images),
``precision_at_k``
``{"k": [...], "precision": [...]}``, ``pr_radius``
``{"radius": [...], "precision": [...], "recall": [...]}`` (``null`` for float) and provenance
(``dataset``, ``source``, ``tie_rule``, ``relevance``, ``seconds``, ``created``).
See :mod:`pipeline.retrieval.metrics` for the definitions.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline import schema
from pipeline.artifacts import check_aligned, read_h5, write_json
from pipeline.data.split_table import QUERY, RETRIEVAL
from pipeline.retrieval.metrics import (
    DEFAULT_TOPK,
    ZERO_HIT_MODES,
    RetrievalResult,
    default_pk_grid,
    evaluate_retrieval,
    evaluate_retrieval_float,
)
from pipeline.stage_inputs import read_feature_rows

TIE_RULE = "distance ascending, ties by retrieval-set index ascending (stable sort)"
RELEVANCE = "shares at least one ground-truth label"


def log_stderr(msg: str) -> None:
    stamp = _dt.datetime.now().strftime("%H:%M:%S")
    print(f"{stamp} evaluate: {msg}", file=sys.stderr, flush=True)


def parse_topk(text: str | int | None) -> int | None:
    """``"1000"`` → 1000; ``"all"`` (or ``None``) → ``None`` (the whole ranking)."""
    if text is None or str(text).lower() in ("all", "none", "null"):
        return None
    try:
        k = int(text)
    except ValueError:
        raise ValueError(f"--topk must be a positive integer or 'all', got {text!r}") from None
    if k < 1:
        raise ValueError(f"--topk must be a positive integer or 'all', got {text!r}")
    return k


def parse_grid(text: str | None) -> list[int] | None:
    """``"1,50,100"`` → ``[1, 50, 100]``; ``None`` → the default grid."""
    if text is None:
        return None
    try:
        ks = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--pk-grid must be a comma list of integers, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise ValueError(f"--pk-grid must hold positive integers, got {text!r}")
    return ks


def _finite(values: Any) -> list[float | None]:
    """JSON-safe floats (NaN → ``null``)."""
    return [None if not math.isfinite(v) else float(v) for v in np.asarray(values, float)]


def _load_split(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    data, attrs = read_h5(path, ["ids", "labels", "split"])
    if data["labels"].ndim != 2:
        raise ValueError(f"{path}: labels must be (N, C), got shape {data['labels'].shape}")
    return data, attrs


def _rows_of(split: np.ndarray) -> np.ndarray:
    return np.isin(split, (QUERY, RETRIEVAL))


def _codes_valid(path: str | os.PathLike, n: int) -> np.ndarray:
    """A codes file's ``valid`` flags (all true, with a warning, in files encoded before the
    flag was written)."""
    with h5py.File(path, "r") as f:
        if "valid" in f:
            return f["valid"][...].astype(bool)
    log_stderr(f"warning: {path} has no 'valid' dataset (encoded by an older version): rows of "
               "unreadable images, if any, are scored; re-encode to leave them out")
    return np.ones(n, bool)


def evaluate_codes_file(split_path: str | os.PathLike, codes_path: str | os.PathLike, *,
                        topk: int | None = DEFAULT_TOPK, zero_hit: str = "drop",
                        ks: list[int] | None = None, pr: bool = True,
                        method_name: str | None = None, threads: int | None = None,
                        device: str | None = None) -> dict[str, Any]:
    """Evaluate one ``codes/{method}_{bits}.h5`` against ``split.h5``; returns the JSON dict."""
    t0 = time.perf_counter()
    sp, sattrs = _load_split(split_path)
    cd, cattrs = read_h5(codes_path, ["ids", "codes", "split"], stage="codes")
    rows = _rows_of(sp["split"])
    check_aligned(sp["ids"][rows], cd["ids"], f"{split_path} (query+retrieval rows)",
                  str(codes_path))
    if not np.array_equal(sp["split"][rows], cd["split"]):
        bad = int(np.flatnonzero(sp["split"][rows] != cd["split"])[0])
        raise ValueError(f"row mismatch: {codes_path} marks row {bad} (id {cd['ids'][bad]}) as "
                         f"split {cd['split'][bad]} but {split_path} says "
                         f"{sp['split'][rows][bad]}; re-encode with the current split")
    if "bits" not in cattrs:
        raise ValueError(f"{codes_path}: attr 'bits' missing; re-encode")
    bits = int(cattrs["bits"])  # the table's column
    width = int(cattrs.get("code_bits", bits))  # the code's own width (aux: one bit per class)
    method = method_name or str(cattrs.get("method", Path(codes_path).stem))
    labels = sp["labels"][rows]
    valid = _codes_valid(codes_path, len(cd["ids"]))
    n_invalid = int((~valid).sum())
    if n_invalid:
        log_stderr(f"warning: {n_invalid} query/retrieval rows have valid=0 (unreadable image) and "
                   "are left out of the evaluation")
    q, r = (cd["split"] == QUERY) & valid, (cd["split"] == RETRIEVAL) & valid
    log_stderr(f"{codes_path}: method {method}, {bits} bits (codes of {width}), {int(q.sum())} "
               f"queries x {int(r.sum())} retrieval items")
    rep = evaluate_retrieval(cd["codes"][q], cd["codes"][r], labels[q], labels[r], topk=topk,
                             ks=ks, zero_hit=zero_hit, pr=pr, bits=width, threads=threads,
                             device=device)
    out = _as_json(rep, method=method, bits=bits, n_retrieval=int(r.sum()),
                   dataset=sattrs.get("dataset"), source=str(codes_path),
                   seconds=time.perf_counter() - t0)
    out.update(code_bits=width, uses_aux=bool(cattrs.get("uses_aux", False)),
               selected=cattrs.get("selected") or {})
    out["n_invalid_excluded"] = n_invalid
    return out


def evaluate_features_file(split_path: str | os.PathLike, features_path: str | os.PathLike, *,
                           method_name: str = "float", topk: int | None = DEFAULT_TOPK,
                           zero_hit: str = "drop", ks: list[int] | None = None,
                           chunk: int = 64) -> dict[str, Any]:
    """Evaluate Euclidean ranking of ``features.h5`` (the float ceiling); returns the JSON dict.

    Memory: the query and retrieval rows (1.8 GiB at COCO scale) plus ``chunk`` x retrieval
    distances in float32 and float64 (64 queries: 83 MB at COCO scale).
    """
    t0 = time.perf_counter()
    sp, sattrs = _load_split(split_path)
    fd, _ = read_h5(features_path, ["ids", "valid"], stage="features")
    rows = _rows_of(sp["split"])
    if len(fd["ids"]) == len(sp["ids"]):  # every row of split.h5
        check_aligned(sp["ids"], fd["ids"], str(split_path), str(features_path))
        split, labels = sp["split"], sp["labels"]
        considered = rows
    else:  # only the query + retrieval rows
        check_aligned(sp["ids"][rows], fd["ids"], f"{split_path} (query+retrieval rows)",
                      str(features_path))
        split, labels = sp["split"][rows], sp["labels"][rows]
        considered = np.ones(len(split), bool)
    valid = fd["valid"].astype(bool)
    q, r = (split == QUERY) & valid, (split == RETRIEVAL) & valid
    n_invalid = int((considered & ~valid).sum())
    if n_invalid:
        log_stderr(f"warning: {n_invalid} query/retrieval rows have valid=0 (unreadable image) "
                   "and are left out of the float evaluation")
    # only the query and retrieval rows, read by blocks: one copy of them, never the whole file
    q_feats = read_feature_rows(str(features_path), np.flatnonzero(q))
    r_feats = read_feature_rows(str(features_path), np.flatnonzero(r))
    log_stderr(f"{features_path}: method {method_name}, {int(q.sum())} queries x {int(r.sum())} "
               f"retrieval items, {q_feats.shape[1]}-d features")
    rep = evaluate_retrieval_float(q_feats, r_feats, labels[q], labels[r], topk=topk, ks=ks,
                                   zero_hit=zero_hit, chunk=chunk)
    out = _as_json(rep, method=method_name, bits=None, n_retrieval=int(r.sum()),
                   dataset=sattrs.get("dataset"), source=str(features_path),
                   seconds=time.perf_counter() - t0)
    out["n_invalid_excluded"] = n_invalid
    return out


def _as_json(rep: RetrievalResult, *, method: str, bits: int | None, n_retrieval: int,
             dataset: Any, source: str, seconds: float) -> dict[str, Any]:
    m = rep.map
    pr = rep.pr_radius
    return {
        "method": method,
        "bits": bits,
        "map": _finite([m.map])[0],
        "topk": "all" if m.topk is None else int(m.topk),
        "zero_hit": m.zero_hit,
        "n_queries": m.n_queries_used,
        "n_queries_total": m.n_queries_total,
        "n_retrieval": n_retrieval,
        "precision_at_k": {"k": [int(k) for k in rep.precision_at_k.k],
                           "precision": _finite(rep.precision_at_k.precision)},
        "pr_radius": None if pr is None else {"radius": [int(t) for t in pr.radius],
                                              "precision": _finite(pr.precision),
                                              "recall": _finite(pr.recall)},
        "dataset": dataset,
        "source": source,
        "tie_rule": TIE_RULE,
        "relevance": RELEVANCE,
        "seconds": round(seconds, 3),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


__all__ = ["evaluate_codes_file", "evaluate_features_file", "parse_topk", "parse_grid",
           "write_json", "default_pk_grid"]


def add_convention_args(p: argparse.ArgumentParser) -> None:
    """The evaluation convention's options, shared by the ``evaluate`` and ``evaluate_float``
    stages: ``--topk``, ``--zero-hit`` (defaults: the schema's ``eval`` section), ``--pk-grid``."""
    p.add_argument("--topk", default=str(DEFAULT_TOPK),
                   help="K of MAP@K, or 'all' for the whole ranking (default: schema's eval.topk)")
    p.add_argument("--zero-hit", choices=ZERO_HIT_MODES,
                   default=schema.defaults("eval")["zero_hit"],
                   help="queries without any relevant retrieval item: drop them (authors' "
                        "convention, default) or count them as 0")
    p.add_argument("--pk-grid", default=None,
                   help="comma list of K for topK-precision (default 1,50,100,...,5000)")


def log_result(out: dict[str, Any], path: str | os.PathLike) -> None:
    """One line on stderr: the MAP, the queries counted, the time and where it went."""
    log_stderr(f"MAP@{out['topk']} = {out['map']} ({out['n_queries']} of "
               f"{out['n_queries_total']} queries, zero_hit={out['zero_hit']}) in "
               f"{out['seconds']} s -> {path}")
