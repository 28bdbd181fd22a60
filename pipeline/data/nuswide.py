"""NUS-WIDE split as the LAGNH paper (§4.1), and user-tag auxiliary labels (§4.2).

``source.kind: nuswide``; ``source.root`` holds the official files (paths below are relative to
it unless absolute; the defaults, in parentheses, are the schema's: the layout of the official
archives unpacked into root):

* ``image_list`` (``ImageList/Imagelist.txt``): one image path per line (269,648 lines; Windows
  paths such as ``C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg`` are fine);
* ``labels_dir`` (``Groundtruth/AllLabels``): ``Labels_<concept>.txt``, one 0/1 per line of the
  image list (81 concepts);
* ``tags_file`` (``NUS_WID_Tags/AllTags1k.txt``): N × T 0/1 matrix of user tags;
* ``tag_list`` (``NUS_WID_Tags/TagList1k.txt``): the T tag names, one per line, in the matrix's
  column order (with ``AllTags81.txt`` as ``tags_file`` give ``Concepts81.txt`` here);
* ``tag_map`` (``{}``): concept → tag name, where a concept's tag is named differently;
* ``images`` (``Flickr``): the image folder; ``paths`` are ``<images>/<the last
  path_components of the image-list line>``, e.g. ``Flickr/actor/0001_2124494179.jpg``;
* ``path_components`` (``2``);
* ``concepts`` (``null``): an explicit concept list; null: the ``n_concepts`` most frequent;
* ``n_concepts`` (``21``).

Protocol (``split``: ``per_concept_query`` 200, ``train`` 5000, ``seed``):

1. concepts: ``source.concepts``, or the ``n_concepts`` concepts with the most positive images
   in the label files (ties by name); columns in alphabetical order of the concept names;
2. images with none of these concepts are dropped (145,733 remain in the paper), then those
   whose file is missing, empty or unreadable (``split.missing_images``, default ``drop`` for
   this protocol; counted in the attrs);
3. query: for each concept in column order, ``per_concept_query`` images drawn at random from
   the images having that concept; the union, de-duplicated (3,156 in the paper); with
   ``split.query`` (config.yaml sets 3156) surplus queries are dropped or missing ones added at
   random so that there are exactly that many (the union's size depends on the draw and on the
   images; a fixed count needs this step);
4. train: ``train`` images drawn at random from the rest; retrieval: everything else (137,577).

**Image count.** Step 2 keeps every image with one of the concepts in the ground truth:
195,834 of the official files for the 21 most frequent concepts (the count other hashing
code's NUS-WIDE preprocessing states), while the paper reports 145,733. The
paper's wording ("we first select images that fall into the 21 most common tags, then remove
those that do not belong to the 21 most common categories") reads as requiring both a concept
in the ground truth *and* one of the concepts' user tags: ``split.nuswide_images:
labels_and_tags`` implements that reading (tags as in :func:`concept_tags`). Whether it gives
145,733 on the official files is not checked here (no copy of NUS-WIDE offline); split.h5's
attrs record ``nuswide_images``, ``n_images_with_concepts``, the counts and ``paper_counts``
side by side.

Keys left out take the schema's defaults (:func:`pipeline.schema.fill`). One generator seeded
with ``split.seed`` makes all draws. ``ids`` are 0-based line numbers of
the image list (the row index into the label and tag files); rows are in ascending id.
"""

from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from pipeline import schema
from pipeline.data import images
from pipeline.data.split_table import QUERY, RETRIEVAL, TRAIN, SplitTable

log = logging.getLogger("pipeline.datasets.nuswide")

PROTOCOL = "nuswide21-paper"
#: the paper's Table 2 / Sec. 4.1 counts (recorded beside ours in split.h5's attrs)
PAPER_COUNTS = {"images": 145733, "query": 3156, "train": 5000, "retrieval": 137577}
_LINES_PER_BLOCK = 20000


def _cfg(source: dict[str, Any]) -> dict[str, Any]:
    if "root" not in source:
        raise ValueError("nuswide: source.root is required (the folder holding the NUS-WIDE "
                         "files)")
    # the schema's defaults for kind nuswide; a key given as null takes its default too
    return schema.fill("source", {"kind": "nuswide",
                                  **{k: v for k, v in source.items() if v is not None}})


def _path(source: dict[str, Any], key: str) -> Path:
    return Path(source["root"]) / str(_cfg(source)[key])


def check_files(source: dict[str, Any], concepts: list[str] | None = None,
                need_tags: bool = True) -> None:
    """Raise one ``FileNotFoundError`` listing every missing file with its config key."""
    cfg = _cfg(source)
    missing: list[str] = []
    keys = ["image_list"] + (["tags_file", "tag_list"] if need_tags else [])
    for key in keys:
        if not _path(source, key).is_file():
            missing.append(f"  {_path(source, key)} (source.{key})")
    ldir = _path(source, "labels_dir")
    if not ldir.is_dir() or not any(ldir.glob("Labels_*.txt")):
        missing.append(f"  {ldir}/Labels_<concept>.txt (source.labels_dir)")
    else:
        for c in concepts or cfg["concepts"] or []:
            if not (ldir / f"Labels_{c}.txt").is_file():
                missing.append(f"  {ldir / f'Labels_{c}.txt'} (source.concepts: '{c}')")
    if missing:
        raise FileNotFoundError(
            f"nuswide: {len(missing)} required file(s) missing under source.root "
            f"'{source['root']}':\n" + "\n".join(missing)
            + "\nunpack the official NUS-WIDE files there or point the keys above at them")


def _parse_block(rows: list[bytes], n_cols: int, path: Path, first_line: int) -> np.ndarray:
    """Rows of single-character 0/1 entries → uint8 (len(rows), n_cols), vectorised; anything
    else (multi-character tokens, other symbols, wrong counts) goes through a checked slow path."""
    buf = np.frombuffer(b"\n".join(rows) + b"\n", dtype=np.uint8)
    digit = (buf == 48) | (buf == 49)
    newline = buf == 10
    blank = (buf == 32) | (buf == 9) | (buf == 13)
    if not (digit | newline | blank).all() or (digit[1:] & digit[:-1]).any():
        return _parse_slow(rows, n_cols, path, first_line)
    row_of = np.cumsum(newline)[digit]
    if not (np.bincount(row_of, minlength=len(rows))[:len(rows)] == n_cols).all():
        return _parse_slow(rows, n_cols, path, first_line)
    return (buf[digit] - 48).astype(np.uint8).reshape(len(rows), n_cols)


def _parse_slow(rows: list[bytes], n_cols: int, path: Path, first_line: int) -> np.ndarray:
    out = np.zeros((len(rows), n_cols), dtype=np.uint8)
    for i, row in enumerate(rows):
        tok = row.split()
        try:
            vals = [int(t) for t in tok]
        except ValueError:
            vals = []
        if len(tok) != n_cols or any(v not in (0, 1) for v in vals) or len(vals) != n_cols:
            raise ValueError(f"{path}: data line {first_line + i + 1}: expected {n_cols} values "
                             f"0/1, got {row[:80]!r}")
        out[i] = vals
    return out


def read_binary_matrix(path: str | os.PathLike, n_cols: int | None = None,
                       columns: list[int] | None = None) -> np.ndarray:
    """Read a whitespace-separated 0/1 text matrix (one row per non-empty line) as uint8.

    Args:
        path: the text file (e.g. ``Labels_sky.txt``: N × 1, ``AllTags1k.txt``: N × 1000).
        n_cols: expected number of columns (default: that of the first non-empty line).
        columns: keep only these columns, in this order (default all).

    Returns:
        uint8 array (N, len(columns) or n_cols).

    Raises:
        ValueError: a line with another number of values, or a value other than 0/1.
    """
    path = Path(path)
    blocks: list[np.ndarray] = []
    done = 0
    with open(path, "rb") as f:
        while True:
            lines = list(itertools.islice(f, _LINES_PER_BLOCK))
            if not lines:
                break
            rows = [r for r in (ln.strip() for ln in lines) if r]
            if not rows:
                continue
            if n_cols is None:
                n_cols = len(rows[0].split())
            block = _parse_block(rows, n_cols, path, done)
            blocks.append(block[:, columns] if columns is not None else block)
            done += len(rows)
    width = len(columns) if columns is not None else (n_cols or 0)
    return np.concatenate(blocks) if blocks else np.zeros((0, width), np.uint8)


def read_image_list(source: dict[str, Any]) -> np.ndarray:
    """Image paths of ``source.image_list`` as ``<images>/<last path_components>`` (object)."""
    cfg = _cfg(source)
    k = int(cfg["path_components"])
    out = []
    with open(_path(source, "image_list"), encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            parts = [p for p in line.replace("\\", "/").split("/") if p]
            rel = "/".join(parts[-k:]) if k > 0 else "/".join(parts)
            out.append(str(PurePosixPath(str(cfg["images"])) / rel) if cfg["images"] else rel)
    return np.asarray(out, dtype=object)


def concept_names(source: dict[str, Any]) -> list[str]:
    """All concepts with a ``Labels_<concept>.txt`` in ``source.labels_dir``, sorted."""
    ldir = _path(source, "labels_dir")
    return sorted(p.name[len("Labels_"):-len(".txt")] for p in ldir.glob("Labels_*.txt"))


def read_concept_labels(source: dict[str, Any], concepts: list[str], n_images: int) -> np.ndarray:
    """uint8 (n_images, len(concepts)) ground truth from the ``Labels_<concept>.txt`` files."""
    ldir = _path(source, "labels_dir")
    cols = []
    for c in concepts:
        col = read_binary_matrix(ldir / f"Labels_{c}.txt", n_cols=1)[:, 0]
        if len(col) != n_images:
            raise ValueError(f"{ldir / f'Labels_{c}.txt'}: {len(col)} lines, but the image list "
                             f"{_path(source, 'image_list')} has {n_images}; mixed file versions?")
        cols.append(col)
    return np.stack(cols, axis=1) if cols else np.zeros((n_images, 0), np.uint8)


def select_concepts(source: dict[str, Any], n_images: int) -> list[str]:
    """``source.concepts`` as given, or the ``n_concepts`` most frequent ones, sorted by name."""
    cfg = _cfg(source)
    if cfg["concepts"]:
        return [str(c) for c in cfg["concepts"]]
    names = concept_names(source)
    n = int(cfg["n_concepts"])
    if n > len(names):
        raise ValueError(f"nuswide: source.n_concepts={n} but {_path(source, 'labels_dir')} has "
                         f"only {len(names)} label files")
    freq = read_concept_labels(source, names, n_images).sum(0)
    order = sorted(range(len(names)), key=lambda i: (-int(freq[i]), names[i]))[:n]
    chosen = sorted(names[i] for i in order)
    log.info("nuswide: the %d most frequent concepts: %s", n,
             ", ".join(f"{names[i]} ({int(freq[i])})" for i in order))
    return chosen


def build_split(source: dict[str, Any], split: dict[str, Any]) -> SplitTable:
    """Build the paper's NUS-WIDE split (see the module docstring for keys and protocol)."""
    cfg = _cfg(source)
    split = schema.fill("split", {"protocol": "nuswide", **split})  # its defaults
    check_files(source)
    if not _path(source, "images").is_dir():
        log.warning("image folder %s (source.images) does not exist yet; the features stage "
                    "needs it", _path(source, "images"))
    paths = read_image_list(source)
    n_all = len(paths)
    concepts = select_concepts(source, n_all)
    labels = read_concept_labels(source, concepts, n_all)
    keep = labels.any(1)
    n_labelled = int(keep.sum())
    if split["nuswide_images"] == "labels_and_tags":
        keep &= concept_tags(source, concepts, n_all).any(1)
        log.info("nuswide: %d of the %d images with a concept also carry one of its tags",
                 int(keep.sum()), n_labelled)
    ids = np.flatnonzero(keep).astype(np.int64)
    paths, labels = paths[keep], labels[keep]
    n_concept = len(ids)
    log.info("nuswide: %d of %d images have at least one of the %d concepts", n_concept, n_all,
             len(concepts))
    usable, image_attrs = images.apply_policy(source["root"], list(paths),
                                              split["missing_images"], "nuswide")
    ids, paths, labels = ids[usable], paths[usable], labels[usable]
    n = len(ids)

    per = int(split["per_concept_query"])
    n_train = int(split["train"])
    rng = np.random.default_rng(int(split["seed"]))
    query = np.zeros(n, dtype=bool)
    for c, name in enumerate(concepts):
        pos = np.flatnonzero(labels[:, c])
        if len(pos) < per:
            log.warning("nuswide: concept '%s' has only %d images (< per_concept_query=%d); "
                        "all are queries", name, len(pos), per)
        query[rng.choice(pos, size=min(per, len(pos)), replace=False)] = True
    n_drawn = int(query.sum())
    if split.get("query") is not None:
        query = exact_query_count(query, int(split["query"]), rng)
    rest = np.flatnonzero(~query)
    if not 0 < n_train < len(rest):
        raise ValueError(f"nuswide: split.train={n_train} must be between 1 and "
                         f"{len(rest) - 1} (images left after the queries); lower it")
    codes = np.full(n, RETRIEVAL, dtype=np.uint8)
    codes[query] = QUERY
    codes[rng.choice(rest, size=n_train, replace=False)] = TRAIN
    counts = {k: int((codes == v).sum()) for k, v in
              (("train", TRAIN), ("query", QUERY), ("retrieval", RETRIEVAL))}
    log.info("nuswide: %d query draws → %d queries after de-duplication%s; %s",
             per * len(concepts), n_drawn,
             f", {counts['query']} after split.query" if split.get("query") else "", counts)
    return SplitTable(ids, paths, labels, codes, concepts,
                      str(Path(source["root"])), PROTOCOL,
                      {"n_images_listed": n_all, "n_images_without_concepts": n_all - n_concept,
                       "per_concept_query": per, "image_list": str(cfg["image_list"]),
                       "nuswide_images": split["nuswide_images"],
                       "n_images_with_concepts": n_labelled, "n_queries_drawn": n_drawn,
                       "paper_counts": PAPER_COUNTS,
                       **image_attrs})


def exact_query_count(query: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """The query mask with exactly ``total`` rows: surplus queries dropped or missing ones added,
    chosen at random with ``rng`` (``split.query`` for NUS-WIDE; the paper's 3,156 is the size
    of one draw's de-duplicated union, so a fixed size needs this step).

    Example:
        >>> q = exact_query_count(np.arange(10) < 6, 4, np.random.default_rng(0))
        >>> int(q.sum()), bool(q[6:].any())
        (4, False)
    """
    query = query.copy()
    have = np.flatnonzero(query)
    if total > len(query) - 2:
        raise ValueError(f"nuswide: split.query={total} leaves no training or retrieval image "
                         f"among {len(query)}; lower it")
    if len(have) > total:
        query[rng.choice(have, size=len(have) - total, replace=False)] = False
    elif len(have) < total:
        query[rng.choice(np.flatnonzero(~query), size=total - len(have), replace=False)] = True
    return query


def concept_tags(source: dict[str, Any], concepts: list[str], n_all: int) -> np.ndarray:
    """uint8 (n_all, len(concepts)): 1 where an image's user tags hold a concept's tag (its
    name, or ``source.tag_map``'s), every image-list row."""
    cfg = _cfg(source)
    check_files(source, concepts, need_tags=True)
    tags_path, list_path = _path(source, "tags_file"), _path(source, "tag_list")
    tags = [t.strip() for t in list_path.read_text(encoding="utf-8",
                                                   errors="replace").splitlines() if t.strip()]
    col = {t.lower(): i for i, t in enumerate(tags)}
    tag_map = {str(k): str(v) for k, v in (cfg["tag_map"] or {}).items()}
    wanted = [tag_map.get(c, c).lower() for c in concepts]
    unknown = [c for c, w in zip(concepts, wanted, strict=True) if w not in col]
    if unknown:
        raise ValueError(f"nuswide: no tag column in {list_path} for concept(s) {unknown}; "
                         "map them to tag names with source.tag_map (concept: tag)")
    matrix = read_binary_matrix(tags_path, n_cols=len(tags), columns=[col[w] for w in wanted])
    if len(matrix) != n_all:
        raise ValueError(f"{tags_path}: {len(matrix)} rows, but the image list has {n_all}")
    return matrix


def tag_aux_labels(source: dict[str, Any], ids: np.ndarray,
                   concepts: list[str] | None = None) -> np.ndarray:
    """Auxiliary labels from user tags: 1 where an image carries the tag of a concept (§4.2).

    Args:
        source: the dataset's source config (``tags_file``, ``tag_list``, ``tag_map``).
        ids: image-list line numbers (``split.h5`` ``ids``).
        concepts: the label columns (``split.h5`` attr ``class_names``; default: selected
            again from the label files exactly as :func:`build_split` does).

    Returns:
        uint8 (len(ids), len(concepts)), rows in the order of ``ids``.
    """
    check_files(source, concepts, need_tags=True)
    n_all = len(read_image_list(source))
    if concepts is None:
        concepts = select_concepts(source, n_all)
    matrix = concept_tags(source, concepts, n_all)
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= n_all):
        raise ValueError(f"nuswide: ids out of range 0..{n_all - 1}; split.h5 does not belong "
                         "to these files")
    aux = matrix[ids]
    log.info("nuswide: tag auxiliary labels for %d images, %d without any of the %d tags",
             len(ids), int((aux.sum(1) == 0).sum()), len(concepts))
    return aux
