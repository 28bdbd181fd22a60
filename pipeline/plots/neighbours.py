"""Retrieval gallery: a few fixed queries and their Hamming top-k per method, as one image.

Drawn by the ``gallery`` stage (:mod:`pipeline.stages.gallery`).

Queries are drawn from the query rows of ``split.h5`` with ``numpy.random.default_rng(seed)``,
so every method shows the same queries. For each query there is one line per codes file: the
method's name, the query image (blue frame) and its top-k retrieval images in ranking order
(Hamming distance, ties by retrieval index), each framed green when it shares a ground-truth label
with the query and red when not, with its distance underneath. Images are read from the split's
``image_root`` attr (or ``--image-root``) joined with ``paths``; an unreadable image is drawn as a
grey tile saying so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from pipeline.artifacts import check_aligned, read_h5
from pipeline.data.split_table import QUERY, RETRIEVAL
from pipeline.retrieval.hamming import hamming_topk

GREEN, RED, BLUE, GREY = (30, 160, 60), (210, 40, 40), (40, 90, 210), (150, 150, 150)
BORDER, TEXT_H, LABEL_W, GAP = 4, 14, 120, 12


@dataclass
class MethodCodes:
    """One codes file, aligned with ``split.h5``."""

    name: str
    bits: int
    q_codes: np.ndarray
    db_codes: np.ndarray


def load_codes(codes_path: str | os.PathLike, split_ids: np.ndarray, split: np.ndarray,
               split_path: str | os.PathLike) -> MethodCodes:
    """Read a codes file and check it holds the query+retrieval rows of ``split.h5`` in order."""
    cd, attrs = read_h5(codes_path, ["ids", "codes", "split"], stage="codes")
    rows = np.isin(split, (QUERY, RETRIEVAL))
    check_aligned(split_ids[rows], cd["ids"], f"{split_path} (query+retrieval rows)",
                  str(codes_path))
    return MethodCodes(str(attrs.get("method", Path(codes_path).stem)),
                       int(attrs.get("code_bits", attrs["bits"])),
                       cd["codes"][cd["split"] == QUERY], cd["codes"][cd["split"] == RETRIEVAL])


def _font() -> Any:
    try:
        return ImageFont.load_default(size=11)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


@lru_cache(maxsize=512)
def _tile(path: str, size: int) -> Image.Image:
    try:
        with Image.open(path) as im:
            return ImageOps.fit(im.convert("RGB"), (size, size))
    except (OSError, ValueError):
        tile = Image.new("RGB", (size, size), GREY)
        d = ImageDraw.Draw(tile)
        d.text((4, size // 2 - 12), "image\nmissing", fill=(255, 255, 255), font=_font())
        return tile


def _framed(tile: Image.Image, colour: tuple[int, int, int]) -> Image.Image:
    return ImageOps.expand(tile, border=BORDER, fill=colour)


def render_gallery(split_path: str | os.PathLike, codes_paths: list[str | os.PathLike], *,
                   n_queries: int = 4, k: int = 10, seed: int = 0, thumb: int = 96,
                   image_root: str | None = None) -> Image.Image:
    """Build the gallery image (see the module docstring)."""
    sp, sattrs = read_h5(split_path, ["ids", "paths", "labels", "split"])
    root = Path(image_root if image_root is not None else sattrs.get("image_root", "."))
    split = sp["split"]
    q_rows = np.flatnonzero(split == QUERY)
    r_rows = np.flatnonzero(split == RETRIEVAL)
    if len(q_rows) == 0 or len(r_rows) == 0:
        raise ValueError(f"{split_path}: needs query and retrieval rows")
    methods = [load_codes(p, sp["ids"], split, split_path) for p in codes_paths]
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(q_rows), size=min(n_queries, len(q_rows)), replace=False))
    k = min(k, len(r_rows))
    labels = sp["labels"].astype(bool)
    class_names = sattrs.get("class_names") or []

    cell = thumb + 2 * BORDER
    width = LABEL_W + (k + 1) * (cell + 4) + GAP
    line_h = cell + TEXT_H
    block_h = len(methods) * (line_h + 4) + TEXT_H + GAP
    header_h = 2 * TEXT_H + 6
    canvas = Image.new("RGB", (width, header_h + len(chosen) * block_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = _font()
    draw.text((6, 4), f"Hamming top-{k} (ties by retrieval index). Frame: blue = query, "
                      "green = shares a label with the query, red = does not.",
              fill=(0, 0, 0), font=font)

    results = [hamming_topk(m.q_codes[chosen], m.db_codes, k, device="numpy") for m in methods]
    y = header_h
    for qi, q_local in enumerate(chosen):
        q_row = q_rows[q_local]
        names = [class_names[c] for c in np.flatnonzero(labels[q_row])][:4] if class_names \
            else []
        draw.text((6, y), f"query id {sp['ids'][q_row]}: {', '.join(map(str, names))}",
                  fill=(0, 0, 0), font=font)
        y += TEXT_H
        q_tile = _framed(_tile(str(root / sp["paths"][q_row]), thumb), BLUE)
        for m, (idx, dist) in zip(methods, results, strict=True):
            draw.text((6, y + cell // 2 - 6), f"{m.name} ({m.bits} bits)", fill=(0, 0, 0),
                      font=font)
            canvas.paste(q_tile, (LABEL_W, y))
            for j in range(k):
                row = r_rows[idx[qi, j]]
                rel = bool(np.any(labels[row] & labels[q_row]))
                x = LABEL_W + (j + 1) * (cell + 4) + GAP
                canvas.paste(_framed(_tile(str(root / sp["paths"][row]), thumb),
                                     GREEN if rel else RED), (x, y))
                draw.text((x + 2, y + cell + 1), f"d={dist[qi, j]}", fill=(60, 60, 60),
                          font=font)
            y += line_h + 4
        y += GAP
    return canvas


def render_search_gallery(result: dict[str, Any], *, thumb: int = 96) -> Image.Image:
    """The gallery of ``python -m pipeline search --image ... --gallery PNG``: one line per new
    image (framed blue, with its auxiliary labels) followed by its top-k (framed grey, with the
    Hamming distance and ground-truth labels; index images in dark blue text).

    Args:
        result: :func:`pipeline.retrieval.new_images.search_images`'s dict.
    """
    queries = result["queries"]
    k = max((len(q["results"]) for q in queries), default=0)
    cell = thumb + 2 * BORDER
    line_h = TEXT_H + cell + 2 * TEXT_H + GAP
    width = (k + 1) * (cell + 4) + GAP + 8
    canvas = Image.new("RGB", (max(width, 480), TEXT_H + 6 + len(queries) * line_h),
                       (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = _font()
    draw.text((6, 4), f"{result['dataset']}: {result['method']} {result['bits']} bits, "
                      f"Hamming top-{k} (ties by database row). Blue frame: the new image.",
              fill=(0, 0, 0), font=font)
    y = TEXT_H + 6
    for q in queries:
        draw.text((6, y), f"{Path(q['image']).name}: aux labels "
                          f"{', '.join(q['aux_labels']) or '(none)'}", fill=(0, 0, 0), font=font)
        y += TEXT_H
        canvas.paste(_framed(_tile(str(q["image"]), thumb), BLUE), (6, y))
        for j, hit in enumerate(q["results"]):
            x = 6 + (j + 1) * (cell + 4) + GAP
            canvas.paste(_framed(_tile(str(hit["path"]), thumb), GREY), (x, y))
            colour = (60, 60, 60) if hit["set"] == "retrieval" else BLUE
            draw.text((x + 2, y + cell + 1), f"d={hit['hamming']}", fill=colour, font=font)
            draw.text((x + 2, y + cell + 1 + TEXT_H),
                      ",".join(hit.get("labels", []))[:16], fill=colour, font=font)
        y += line_h - TEXT_H
    return canvas


__all__ = ["render_gallery", "render_search_gallery", "load_codes"]
