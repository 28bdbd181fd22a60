"""Result tables: the evaluation JSONs of one dataset → Table 3-style MAP table and curve data.

The ``report`` stage (:mod:`pipeline.stages.report`) writes the three files below; the plots
(:mod:`pipeline.plots.precision`) share the row order and display names.

* **MAP CSV** (the layout of the paper's Table 3): one row per method, in the order
  random, lsh, sklsh, sh, pcah, itq, sgh, the deep baselines (uhbdnn, deepbit_feat, ssdh,
  sadh_feat, tbh), aux, aux_itq, lagnh, then any other method
  alphabetically, float last;
  columns ``method``, one ``"{bits} bits"`` column per code length (MAP, 4 decimals, empty when
  not evaluated), ``map_at`` (K of MAP@K or ``all``), ``zero_hit`` and ``n_queries``. The
  ``float`` ceiling has no code length: its value repeats in every bit column.
* **topK CSV** (long format): ``method, bits, k, precision`` (``bits`` empty for float).
* **Markdown table**: a caption stating the convention (MAP@K, tie rule, relevance, zero-hit
  handling, unreadable images left out), which rows read the detector's auxiliary labels and
  the settings chosen on a validation split of the training images, then the table with the
  best value of each column in bold; the ``float`` ceiling and the ``random`` floor never count
  as best. The reference rows built from LAGNH's own inputs (``aux``, ``aux_itq``) do count: a
  method that does not beat them does not get the bold.

All inputs must share one MAP convention (``topk`` and ``zero_hit``); mixing is an error.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.artifacts import atomic_path

#: row order of the paper's Table 3 (shallow baselines, then LAGNH); others follow alphabetically
METHOD_ORDER = ("random", "lsh", "sklsh", "sh", "pcah", "itq", "sgh",
                "uhbdnn", "deepbit_feat", "ssdh", "sadh_feat", "tbh",  # deep, paper's order
                "aux", "aux_itq", "lagnh")
FLOAT = "float"
#: rows never marked best: the real-valued ceiling and the random floor
NOT_RANKED = (FLOAT, "random")
DISPLAY = {"random": "Random", "lsh": "LSH", "sklsh": "SKLSH", "sh": "SH", "pcah": "PCAH",
           "itq": "ITQ", "sgh": "SGH", "aux": "Aux labels as code",
           "aux_itq": "Aux bits + ITQ", "lagnh": "LAGNH", "lagnh_batch": "LAGNH (batch-wise)",
           "uhbdnn": "UH-BDNN", "ssdh": "SSDH", "tbh": "TBH",
           "deepbit_feat": "DeepBit (features, no rotation term)",
           "sadh_feat": "SADH (on features)",
           FLOAT: "Float (Euclidean)"}


def load_results(paths: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """Read evaluation JSONs; clear errors for missing files, bad JSON and duplicates."""
    results, seen = [], {}
    for path in paths:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"{p}: evaluation JSON not found")
        try:
            obj = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: not valid JSON ({e}); rerun its evaluate rule") from e
        for key in ("method", "bits", "map", "topk", "zero_hit", "n_queries"):
            if key not in obj:
                raise ValueError(f"{p}: field '{key}' missing; rerun its evaluate rule")
        key = (obj["method"], obj["bits"])
        if key in seen:
            raise ValueError(f"{p} and {seen[key]} both hold method {key[0]} at bits {key[1]}")
        seen[key] = p
        obj["_path"] = str(p)
        results.append(obj)
    if not results:
        raise ValueError("no evaluation JSONs given")
    return results


def method_sort_key(name: str) -> tuple[int, str]:
    """Table 3 order: known methods first, other names alphabetically, ``float`` last."""
    if name == FLOAT:
        return (2, "")
    if name in METHOD_ORDER:
        return (0, f"{METHOD_ORDER.index(name):03d}")
    return (1, name)


def _convention(results: list[dict[str, Any]]) -> tuple[Any, str]:
    conventions = {(str(r["topk"]), r["zero_hit"]) for r in results}
    if len(conventions) > 1:
        detail = ", ".join(f"{Path(r['_path']).name}: MAP@{r['topk']}/{r['zero_hit']}"
                           for r in results)
        raise ValueError(f"inputs mix MAP conventions ({detail}); evaluate all with the same "
                         "--topk and --zero-hit")
    return results[0]["topk"], results[0]["zero_hit"]


def map_rows(results: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The MAP table as ``(header, rows)``; values are floats (``None`` where missing)."""
    topk, zero_hit = _convention(results)
    bits = sorted({int(r["bits"]) for r in results if r["bits"] is not None})
    header = ["method", *[f"{b} bits" for b in bits], "map_at", "zero_hit", "n_queries"]
    rows = []
    for method in sorted({r["method"] for r in results}, key=method_sort_key):
        mine = [r for r in results if r["method"] == method]
        row: dict[str, Any] = {"method": method}
        for b in bits:
            hit = [r for r in mine if r["bits"] is None or int(r["bits"]) == b]
            row[f"{b} bits"] = hit[0]["map"] if hit else None
        n_q = sorted({int(r["n_queries"]) for r in mine})
        row.update(map_at=topk, zero_hit=zero_hit, n_queries="/".join(map(str, n_q)))
        rows.append(row)
    return header, rows


def _fmt(v: Any) -> str:
    return "" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def write_csv(path: str | os.PathLike, header: list[str], rows: list[dict[str, Any]]) -> None:
    """Write rows (dicts) as CSV atomically; floats with 4 decimals."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for row in rows:
            w.writerow([_fmt(row.get(h)) for h in header])


def pk_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """topK-precision in long format: one row per (method, bits, k)."""
    rows = []
    for r in sorted(results, key=lambda r: (method_sort_key(r["method"]), r["bits"] or 0)):
        pk = r.get("precision_at_k") or {"k": [], "precision": []}
        for k, p in zip(pk["k"], pk["precision"], strict=True):
            rows.append({"method": r["method"], "bits": r["bits"], "k": int(k),
                         "precision": None if p is None else float(p)})
    return rows


def write_pk_csv(path: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "bits", "k", "precision"])
        for row in rows:
            p = row["precision"]
            w.writerow([row["method"], "" if row["bits"] is None else row["bits"], row["k"],
                        "" if p is None else f"{p:.6f}"])


def caption(results: list[dict[str, Any]], dataset: str | None) -> str:
    """One-line caption stating the evaluation convention."""
    topk, zero_hit = _convention(results)
    n_used = sorted({int(r["n_queries"]) for r in results})
    n_total = sorted({int(r.get("n_queries_total", r["n_queries"])) for r in results})
    name = dataset or results[0].get("dataset") or "?"
    at = "all" if str(topk) == "all" else f"{int(topk)}"
    if zero_hit == "drop":
        zh = (f"queries without any relevant retrieval item are dropped "
              f"({'/'.join(map(str, n_used))} of {'/'.join(map(str, n_total))} queries count)")
    else:
        zh = (f"queries without any relevant retrieval item count as 0 "
              f"({'/'.join(map(str, n_total))} queries)")
    n_invalid = sorted({int(r.get("n_invalid_excluded") or 0) for r in results})
    invalid = "" if n_invalid == [0] else (
        f" {'/'.join(map(str, n_invalid))} query/retrieval images whose files could not be read "
        f"are left out of every row (queries and retrieval set).")
    return (f"MAP@{at} on {name}. Hamming ranking of the whole retrieval set, ties broken by "
            f"retrieval index ascending (stable sort); relevant = shares at least one "
            f"ground-truth label; {zh}.{invalid} Best value per column in bold (the float "
            f"reference and the random floor are not ranked).{aux_note(results)}")


def aux_note(results: list[dict[str, Any]]) -> str:
    """Caption sentences: which rows read the auxiliary labels, the ``aux`` code's width, and
    the settings chosen on a validation split of the training images."""
    rows = sorted({r["method"] for r in results if r.get("uses_aux")}, key=method_sort_key)
    if not rows:
        return ""
    names = ", ".join(DISPLAY.get(m, m) for m in rows)
    text = f" Rows that read the detector's auxiliary labels: {names}."
    widths = sorted({int(r["code_bits"]) for r in results
                     if r["method"] == "aux" and r.get("code_bits")})
    if widths:
        text += (f" Aux labels as code: the {'/'.join(map(str, widths))}-bit multi-hot vector "
                 "itself, the same code in every column.")
    chosen = {}
    for r in sorted(results, key=lambda r: (method_sort_key(r["method"]), r["bits"] or 0)):
        sel = r.get("selected") or {}
        if "repeats" in sel:
            src = "validation" if sel.get("source") == "validation" else "config"
            chosen.setdefault(r["method"], []).append(
                f"k={sel['repeats']} at {r['bits']} bits ({src}"
                + (f" MAP {sel['validation_map']:.3f}" if sel.get("validation_map") is not None
                   else "") + ")")
    tuned = {}
    for r in sorted(results, key=lambda r: (method_sort_key(r["method"]), r["bits"] or 0)):
        sel = r.get("selected") or {}
        if "relevance" in sel and sel.get("source") == "validation":
            picked = ", ".join(f"{k}={v}" for k, v in sorted(sel.items())
                               if k not in ("source", "validation_map", "relevance"))
            tuned.setdefault(r["method"], f"{picked} (validation MAP "
                             f"{sel['validation_map']:.3f}, relevance {sel['relevance']})")
    for m, picked in tuned.items():
        text += (f" {DISPLAY.get(m, m)}: {picked} chosen on a validation split of the "
                 "training images (rules/tune.smk); its other settings from config.")
    for m, parts in chosen.items():
        text += (f" {DISPLAY.get(m, m)}: auxiliary bits repeated k times, then ITQ bits; k "
                 f"chosen on a validation split of the training images: {', '.join(parts)}.")
    return text


def markdown_table(header: list[str], rows: list[dict[str, Any]], cap: str) -> str:
    """Markdown table with the best value per bit column in bold (ties all bold)."""
    bit_cols = [h for h in header if h.endswith(" bits")]
    best = {}
    for h in bit_cols:
        vals = [round(r[h], 4) for r in rows
                if r["method"] not in NOT_RANKED and r[h] is not None]
        best[h] = max(vals) if vals else None
    lines = [f"Table: {cap}", "", "| Method | " + " | ".join(bit_cols) + " |",
             "|---|" + "---:|" * len(bit_cols)]
    for r in rows:
        cells = []
        for h in bit_cols:
            v = r[h]
            text = "–" if v is None else f"{v:.4f}"
            if v is not None and r["method"] not in NOT_RANKED and round(v, 4) == best[h]:
                text = f"**{text}**"
            cells.append(text)
        lines.append(f"| {DISPLAY.get(r['method'], r['method'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["load_results", "map_rows", "pk_rows", "caption", "markdown_table",
           "method_sort_key", "METHOD_ORDER", "write_csv", "write_pk_csv", "DISPLAY", "FLOAT"]
