"""Split tables: a dataset's images with their ground truth and train/query/retrieval codes.

The split codes (:data:`TRAIN`, :data:`QUERY`, :data:`RETRIEVAL`, :data:`UNUSED`) are defined
here and only here; every module that reads a ``split`` column imports them. The ``split`` stage
(:mod:`pipeline.stages.split`) writes a table as ``split.h5`` with :func:`write_split`.

The ``source`` config names the dataset ``kind``; each kind has a builder returning a
:class:`SplitTable`. ``split.protocol: lists`` reads list files a user supplies instead.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import schema
from pipeline.artifacts import write_h5
from pipeline.data import images

log = logging.getLogger("pipeline.split")

#: split codes of split.h5's ``split`` column (and of the codes files' rows)
TRAIN, QUERY, RETRIEVAL = 0, 1, 2
#: rows a protocol leaves out of all three parts (e.g. images beyond the configured sizes)
UNUSED = 255
#: names of the codes 0, 1, 2 (attr ``split_names`` of split.h5)
SPLIT_NAMES = ("train", "query", "retrieval")


@dataclass
class SplitTable:
    """One row per image: ``ids`` int64, ``paths`` (relative to ``image_root``), ``labels``
    uint8 (N, C) ground truth, ``split`` uint8 (0 train, 1 query, 2 retrieval)."""

    ids: np.ndarray
    paths: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    class_names: list[str]
    image_root: str
    protocol: str
    attrs: dict[str, Any] = field(default_factory=dict)

    def validate(self, where: str = "split") -> None:
        n = len(self.ids)
        for name in ("paths", "labels", "split"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{where}: '{name}' has {len(getattr(self, name))} rows, "
                                 f"ids has {n}")
        if len(np.unique(self.ids)) != n:
            raise ValueError(f"{where}: image ids are not unique")
        if self.labels.ndim != 2 or self.labels.shape[1] != len(self.class_names):
            raise ValueError(f"{where}: labels shape {self.labels.shape} does not match "
                             f"{len(self.class_names)} class names")
        for code, name in enumerate(SPLIT_NAMES):
            if not np.any(self.split == code):
                raise ValueError(f"{where}: the {name} split is empty; check the split sizes "
                                 "in config.yaml against the number of images")


def random_split(n: int, n_train: int, n_query: int, n_retrieval: int | None,
                 seed: int) -> np.ndarray:
    """Seeded random assignment of ``n`` rows: ``n_train`` train, ``n_query`` query and
    ``n_retrieval`` retrieval (``None``: all the rest); rows left over get 255 (unused)."""
    n_ret = n - n_train - n_query if n_retrieval is None else n_retrieval
    if min(n_train, n_query, n_ret) < 1 or n_train + n_query + n_ret > n:
        raise ValueError(f"split sizes train={n_train} query={n_query} retrieval={n_ret} do "
                         f"not fit {n} images; lower them in config.yaml (split section)")
    order = np.random.default_rng(seed).permutation(n)
    split = np.full(n, UNUSED, dtype=np.uint8)
    split[order[:n_train]] = TRAIN
    split[order[n_train:n_train + n_query]] = QUERY
    split[order[n_train + n_query:n_train + n_query + n_ret]] = RETRIEVAL
    return split


def build_coco_format(source: dict[str, Any], split: dict[str, Any]) -> SplitTable:
    """A COCO-format collection (``images`` folder + ``instances`` json), split at random by
    the sizes in ``split`` (``train``, ``query``, ``retrieval`` or null for the rest); both
    sections complete (:func:`build_split` fills the schema's defaults)."""
    from pipeline.data.coco import load_coco_labels

    table = load_coco_labels(source["instances"])
    keep = np.ones(len(table.ids), dtype=bool)
    empty = table.labels.sum(1) == 0
    if split["empty_images"] == "drop":
        keep &= ~empty
    log.info("%s: %d images, %d without annotations (%s)", source["instances"], len(table.ids),
             int(empty.sum()), split["empty_images"])
    ids, paths, labels = table.ids[keep], table.file_names[keep], table.labels[keep]
    usable, image_attrs = images.apply_policy(source["images"], list(paths),
                                              split["missing_images"], source["instances"])
    ids, paths, labels = ids[usable], paths[usable], labels[usable]
    assign = random_split(len(ids), int(split["train"]), int(split["query"]),
                          split.get("retrieval"), int(split["seed"]))
    used = assign != UNUSED
    return SplitTable(ids[used], paths[used], labels[used], assign[used], table.class_names,
                      str(source["images"]), "random",
                      {"category_ids": table.category_ids,
                       "n_empty_images": int(empty.sum()), **image_attrs})


#: kind → builder (a callable, or "module:function" imported on use)
BUILDERS: dict[str, Callable[..., SplitTable] | str] = {
    "demo": build_coco_format,
    "coco_format": build_coco_format,
    "coco2017": "pipeline.data.coco2017:build_split",
    "nuswide": "pipeline.data.nuswide:build_split",
}


def _resolve(spec: Callable[..., SplitTable] | str) -> Callable[..., SplitTable]:
    if callable(spec):
        return spec
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


def build_split(source: dict[str, Any], split: dict[str, Any]) -> SplitTable:
    """Dispatch on ``split.protocol`` (``lists``) or else on ``source.kind``; keys left out
    of ``source`` and ``split`` take the schema's defaults (:func:`pipeline.schema.fill`)."""
    source, split = schema.fill("source", source), schema.fill("split", split)
    if split.get("protocol") == "lists":
        builder = _resolve("pipeline.data.lists:build_split")
    else:
        kind = source.get("kind")
        if kind not in BUILDERS:
            raise ValueError(f"unknown dataset kind '{kind}'; valid kinds: {sorted(BUILDERS)}")
        builder = _resolve(BUILDERS[kind])
    table = builder(source, split)
    if "missing_images" not in table.attrs:  # builders that do not check their images
        table = _drop_unusable(table, split["missing_images"])
    table.validate(str(source.get("instances") or source.get("root") or source.get("kind")))
    return table


def _drop_unusable(table: SplitTable, policy: str) -> SplitTable:
    """``table`` after ``split.missing_images`` (rows kept in order; split codes unchanged)."""
    keep, attrs = images.apply_policy(table.image_root, list(table.paths), policy,
                                      table.protocol)
    return SplitTable(table.ids[keep], table.paths[keep], table.labels[keep], table.split[keep],
                      table.class_names, table.image_root, table.protocol,
                      {**table.attrs, **attrs})


def write_split(table: SplitTable, out: str | Path, dataset: str, seed: int | None) -> None:
    counts = {name: int((table.split == i).sum()) for i, name in enumerate(SPLIT_NAMES)}
    write_h5(out, {"ids": table.ids, "paths": table.paths, "labels": table.labels,
                   "split": table.split},
             stage="split",
             attrs={"dataset": dataset, "class_names": table.class_names,
                    "image_root": table.image_root, "split_names": list(SPLIT_NAMES),
                    "seed": seed if seed is not None else "null", "protocol": table.protocol,
                    "counts": counts, **table.attrs},
             dataset_attrs={"split": {"meaning": "0=train 1=query 2=retrieval"},
                            "labels": {"meaning": "ground truth, evaluation only"}})
    log.info("wrote %s: %s", out, counts)

