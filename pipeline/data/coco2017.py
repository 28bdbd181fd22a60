"""MS COCO 2017 split exactly as the LAGNH paper (§4.1): ``source.kind: coco2017``.

* labels: the 80 categories of the instance annotations (pycocotools), COCO's sparse category
  ids mapped to columns 0..79 in ascending id, the same columns for both files
  (:func:`pipeline.data.coco.load_coco_labels`);
* train: ``split.train`` (5,000) images of train2017 drawn with ``split.seed``;
  retrieval: all the other train2017 images (113,287); query: all of val2017 (5,000).

Images without any annotation (1,021 in train2017, 48 in val2017) are kept with
``split.empty_images: keep`` (what config.yaml's ``coco`` section sets): the paper's counts need
them — 118,287 − 5,000 = 113,287 retrieval images and 5,000 queries are the complete folders.
``drop`` (the schema's default for every protocol) removes them from all three sets (they are
relevant to nothing, so they only lower MAP). Their number is logged and stored
(``n_empty_images``).

Rows: train2017 in ascending image id (split code 0 train / 2 retrieval), then val2017 in
ascending image id (code 1). ``ids`` are COCO image ids (unique across train2017 and val2017);
``paths`` are relative to ``image_root = source.root``, e.g. ``train2017/000000000009.jpg``.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from pipeline import schema
from pipeline.data.coco import load_coco_labels
from pipeline.data.split_table import QUERY, RETRIEVAL, TRAIN, SplitTable

log = logging.getLogger("pipeline.datasets.coco2017")

#: source keys naming files and folders, relative to ``source.root`` unless absolute (their
#: defaults: the schema's, for kind coco2017)
PATH_KEYS = ("train_instances", "val_instances", "train_images", "val_images")
PROTOCOL = "coco2017-paper"


def _under(root: Path, value: str) -> Path:
    return root / value  # an absolute value replaces root


def build_split(source: dict[str, Any], split: dict[str, Any]) -> SplitTable:
    """Build the paper's COCO 2017 split (see the module docstring).

    Args:
        source: ``root`` (folder holding annotations and images, e.g. ``resources/coco``),
            ``train_instances``, ``val_instances``, ``train_images``, ``val_images``.
        split: ``train``, ``seed``, ``empty_images`` ``keep`` | ``drop``.

    Keys left out take the schema's defaults (:func:`pipeline.schema.fill`).
    """
    if "root" not in source:
        raise ValueError("coco2017: source.root is required (the folder holding annotations/, "
                         "train2017/ and val2017/)")
    source = schema.fill("source", {"kind": "coco2017", **source})
    split = schema.fill("split", split)
    root = Path(source["root"])
    cfg = {k: str(source[k]) for k in PATH_KEYS}
    policy = split["empty_images"]
    if policy not in ("keep", "drop"):
        raise ValueError(f"coco2017: split.empty_images must be 'keep' or 'drop', not {policy!r}")
    n_train = int(split["train"])
    seed = int(split["seed"])

    missing = [f"  {_under(root, cfg[k])} (source.{k})"
               for k in ("train_instances", "val_instances")
               if not _under(root, cfg[k]).is_file()]
    if missing:
        raise FileNotFoundError("coco2017: missing annotation file(s):\n" + "\n".join(missing)
                                + "\nrun the download rule or fix source.root / the keys above")
    for k in ("train_images", "val_images"):
        if not _under(root, cfg[k]).is_dir():
            log.warning("image folder %s (source.%s) does not exist yet; the features stage "
                        "needs it", _under(root, cfg[k]), k)

    tr = load_coco_labels(_under(root, cfg["train_instances"]))
    va = load_coco_labels(_under(root, cfg["val_instances"]), category_ids=tr.category_ids)
    if len(tr.category_ids) != 80:
        log.warning("coco2017: %d categories in %s (MS COCO 2017 has 80)", len(tr.category_ids),
                    cfg["train_instances"])
    common = np.intersect1d(tr.ids, va.ids)
    if common.size:
        raise ValueError(f"coco2017: {common.size} image ids occur in both train and val "
                         f"annotation files (e.g. {int(common[0])}); are they the same file?")

    empty_tr, empty_va = tr.labels.sum(1) == 0, va.labels.sum(1) == 0
    n_empty = int(empty_tr.sum() + empty_va.sum())
    log.info("coco2017: %d train2017 images (%d without annotations), %d val2017 images "
             "(%d without annotations); empty_images=%s", len(tr.ids), int(empty_tr.sum()),
             len(va.ids), int(empty_va.sum()), policy)
    keep_tr = ~empty_tr if policy == "drop" else np.ones(len(tr.ids), bool)
    keep_va = ~empty_va if policy == "drop" else np.ones(len(va.ids), bool)

    pool = int(keep_tr.sum())
    if not 0 < n_train < pool:
        raise ValueError(f"coco2017: split.train={n_train} must be between 1 and {pool - 1} "
                         f"(the train2017 images available); lower it in config.yaml")
    assign = np.full(pool, RETRIEVAL, dtype=np.uint8)
    assign[np.random.default_rng(seed).permutation(pool)[:n_train]] = TRAIN

    def rel(folder: str, names: np.ndarray) -> np.ndarray:
        return np.asarray([str(PurePosixPath(folder) / n) for n in names], dtype=object)

    ids = np.concatenate([tr.ids[keep_tr], va.ids[keep_va]])
    paths = np.concatenate([rel(cfg["train_images"], tr.file_names[keep_tr]),
                            rel(cfg["val_images"], va.file_names[keep_va])])
    labels = np.concatenate([tr.labels[keep_tr], va.labels[keep_va]])
    codes = np.concatenate([assign, np.full(int(keep_va.sum()), QUERY, dtype=np.uint8)])
    log.info("coco2017: train %d, query %d, retrieval %d", int((codes == TRAIN).sum()),
             int((codes == QUERY).sum()), int((codes == RETRIEVAL).sum()))
    return SplitTable(ids, paths, labels, codes, tr.class_names, str(root), PROTOCOL,
                      {"category_ids": tr.category_ids, "n_empty_images": n_empty,
                       "n_empty_train2017": int(empty_tr.sum()),
                       "n_empty_val2017": int(empty_va.sum()), "empty_images": policy})
