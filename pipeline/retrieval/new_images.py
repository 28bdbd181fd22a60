"""Hash images the pipeline has never seen, and search them against a dataset's codes.

Library of ``python -m pipeline search --dataset D --bits R --image PATH ...``
(:mod:`pipeline.__main__`) and of the index stages (``rules/index.smk``). A new image goes
through the code of the stages, on the cached artifacts, without rerunning any stage:

1. features: :func:`pipeline.backbones.features_of` with the dataset's ``features`` section
   (the ``features`` stage's decoding, resizing, normalisation and forward step), checked
   against ``features.h5``'s attrs (backbone, weights, image size, precision);
2. auxiliary labels: the dataset's detector (:func:`pipeline.detectors.detector_module`, with
   the demo's trained cell classifier), then the ``auxiliary`` stage's thresholding
   (:func:`pipeline.detectors.multihot.detections_to_aux` with ``auxiliary.threshold`` and
   ``class_map``); or detections / class names given by the caller;
3. the code: the trained model of the codes file (its ``model_file`` attr) and the encode-time
   parameters recorded in it (its ``params`` attr), through the method's ``encode`` (LAGNH's
   batch-independent encoding for the ``lagnh`` row);
4. the ranking: :func:`pipeline.retrieval.hamming.hamming_topk` over the database's valid codes,
   ties by database row (the evaluation's stable order).

A missing artifact is named with the ``snakemake`` command that builds it (:func:`require`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import read_attrs, read_h5
from pipeline.codes import pack_codes
from pipeline.data.split_table import RETRIEVAL


def require(path: str | Path, target: str | Path | None = None) -> Path:
    """``path`` if it exists, else ``FileNotFoundError`` naming the command that builds it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; build it with `snakemake --cores 4 "
                                f"{target or path}` (search reruns no stage)")
    return path


@dataclass(frozen=True)
class DatasetFiles:
    """The cached artifacts of one dataset (paths as the rules write them, under ``root``)."""

    dataset: str
    root: Path = Path(".")

    def result(self, *parts: str) -> Path:
        return self.root / "results" / self.dataset / Path(*parts)

    @property
    def split(self) -> Path:
        return self.result("split.h5")

    @property
    def features(self) -> Path:
        return self.result("features.h5")

    @property
    def aux(self) -> Path:
        return self.result("aux.h5")

    @property
    def cell_classifier(self) -> Path:
        return self.root / "resources" / self.dataset / "cell_classifier.pt"

    def codes(self, method: str, bits: int) -> Path:
        return self.result("codes", f"{method}_{bits}.h5")

    def index_codes(self, name: str, method: str, bits: int) -> Path:
        return self.result("index", name, "codes", f"{method}_{bits}.h5")

    def index_split(self, name: str) -> Path:
        return self.result("index", name, "split.h5")

    def target(self, path: Path) -> str:
        """``path`` as the snakemake target (relative to ``root``)."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


def load_config(configfiles: Sequence[str | Path], dataset: str) -> dict[str, Any]:
    """The dataset's section as the workflow sees it: ``configfiles`` merged in order (later
    keys replace earlier ones, nested sections merged), validated against the schema and
    completed with its defaults (Snakemake's own ``validate``, as ``rules/common.smk`` does).

    Raises:
        ValueError: the dataset is not a section of the config, or the config is invalid.
    """
    import copy

    import yaml
    from snakemake.utils import validate

    from pipeline.schema import SCHEMA_PATH

    def merge(a: dict, b: Mapping) -> dict:
        for k, v in b.items():
            a[k] = merge(a.get(k, {}), v) if isinstance(v, Mapping) and \
                isinstance(a.get(k), dict) else copy.deepcopy(v)
        return a

    config: dict[str, Any] = {}
    for path in configfiles:
        with open(require(path)) as fh:
            merge(config, yaml.safe_load(fh) or {})
    if dataset not in config:
        given = ", ".join(map(str, configfiles))
        raise ValueError(f"dataset '{dataset}' is not a section of {given} (sections: "
                         f"{sorted(config)}); give --configfile")
    try:
        validate(config, schema=str(SCHEMA_PATH))
    except Exception as e:  # snakemake's WorkflowError wraps jsonschema's message
        raise ValueError(f"config: {e}") from None
    return copy.deepcopy(config[dataset])


# --- 1. features --------------------------------------------------------------------------------

#: attrs of features.h5 that a new image's features must match (else features.h5 is stale)
FEATURE_KEYS = ("backbone", "weights", "layer", "image_size", "precision")


def image_features(paths: Sequence[str], features_cfg: dict[str, Any], device: str,
                   files: DatasetFiles) -> np.ndarray:
    """Features of ``paths`` as the ``features`` stage computed the dataset's.

    Raises:
        ValueError: an unreadable image, or ``features.h5`` built with other settings than the
            config's ``features`` section (stale: the command to rebuild it is named).
    """
    from pipeline.backbones import features_of

    attrs = read_attrs(require(files.features, files.target(files.features)))
    feats, ok, info = features_of(paths, features_cfg, device)
    bad = [p for p, good in zip(paths, ok, strict=True) if not good]
    if bad:
        raise ValueError(f"cannot read image(s) {bad}; give image files PIL can open")
    info = {**info, "backbone": features_cfg["backbone"]}
    diff = {k: (attrs.get(k), info[k]) for k in FEATURE_KEYS if str(attrs.get(k)) != str(info[k])}
    if diff:
        said = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
        raise ValueError(f"{files.features} was built with other features settings than the "
                         f"config's ({said}); "
                         f"rebuild it: `snakemake --cores 4 {files.target(files.features)}`")
    return feats


# --- 2. auxiliary labels ------------------------------------------------------------------------


def detector_config(ds: dict[str, Any], files: DatasetFiles) -> dict[str, Any]:
    """The ``detector`` section as the ``detect`` rule passes it (with the trained cell
    classifier's checkpoint for the demo's ``cell_classifier`` kind)."""
    cfg = dict(ds["detector"])
    if cfg.get("kind") == "cell_classifier":
        cfg["checkpoint"] = str(require(files.cell_classifier,
                                        files.target(files.cell_classifier)))
    return cfg


def run_detector(paths: Sequence[str], ids: np.ndarray, detector_cfg: dict[str, Any],
                 device: str) -> dict[str, Any]:
    """The detector on ``paths``: a dict in ``detections.json``'s layout (``detector``,
    ``categories``, ``skipped_ids``, ``detections``), as the ``detect`` stage writes it."""
    from pipeline.detectors import detector_module

    module = detector_module(detector_cfg.get("kind"))
    dets, skipped = module.detect(list(paths), np.asarray(ids), detector_cfg, device)
    return {"detector": detector_cfg, "categories": module.categories(detector_cfg),
            "n_images": len(paths), "skipped_ids": skipped, "detections": dets}


def aux_from_detections(det: Mapping[str, Any], ids: np.ndarray, class_names: Sequence[str],
                        auxiliary: Mapping[str, Any], where: str
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The ``auxiliary`` stage's thresholding: uint8 (N, C) multi-hot labels and float16
    (N, C) best scores."""
    from pipeline.detectors.multihot import detections_to_aux

    aux, scores, _ = detections_to_aux(det, np.asarray(ids), list(class_names),
                                       dict(auxiliary["class_map"]),
                                       float(auxiliary["threshold"]), where=where)
    return aux, scores


def aux_from_tags(tags: Sequence[str], class_names: Sequence[str]) -> np.ndarray:
    """Multi-hot labels from comma-separated class names, one string per image (``""``: none).

    Example:
        >>> aux_from_tags(["bag,shirt", ""], ["shirt", "bag", "coat"]).tolist()
        [[1, 1, 0], [0, 0, 0]]
    """
    column = {name: j for j, name in enumerate(class_names)}
    out = np.zeros((len(tags), len(class_names)), np.uint8)
    for i, text in enumerate(tags):
        for name in filter(None, (t.strip() for t in text.split(","))):
            if name not in column:
                raise ValueError(f"--tags: '{name}' is not a class of the dataset; classes: "
                                 f"{list(class_names)}")
            out[i, column[name]] = 1
    return out


def check_aux_settings(ds: dict[str, Any], files: DatasetFiles) -> None:
    """Refuse when ``aux.h5`` was thresholded with another threshold than the config's (its
    codes would not match what a new image gets)."""
    attrs = read_attrs(require(files.aux, files.target(files.aux)))
    if attrs.get("source") != "detector":
        raise ValueError(f"{files.aux}: the dataset's auxiliary labels are user tags "
                         f"({attrs.get('source')}), not a detector's; give --tags")
    if float(attrs["threshold"]) != float(ds["auxiliary"]["threshold"]):
        raise ValueError(f"{files.aux} was thresholded at {attrs['threshold']}, the config says "
                         f"{ds['auxiliary']['threshold']}; rebuild it: "
                         f"`snakemake --cores 4 {files.target(files.aux)}`")


# --- 3. the code ----------------------------------------------------------------------------------


@dataclass
class Encoder:
    """A trained model with the encode-time parameters of one codes file."""

    module: Any
    state: dict[str, Any]
    params: dict[str, Any]
    width: int
    codes_attrs: dict[str, Any]

    def encode(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """bool (N, width), True = +1: what the ``encode`` stage computes for these rows."""
        b = np.asarray(self.module.encode(self.state, X, Y, self.params))
        if b.dtype != bool or b.shape != (len(X), self.width):
            raise RuntimeError(f"{self.codes_attrs.get('impl')}.encode returned {b.dtype} "
                               f"{b.shape}, expected bool ({len(X)}, {self.width})")
        return b


def load_encoder(codes_path: str | Path, files: DatasetFiles) -> Encoder:
    """The model and parameters the codes file was encoded with (its ``model_file`` and
    ``params`` attrs)."""
    import torch

    from pipeline.methods import get_method

    attrs = read_attrs(require(codes_path, files.target(Path(codes_path))))
    model = Path(attrs["model_file"])
    model = model if model.is_absolute() else files.root / model
    ckpt = torch.load(require(model, files.target(model)), map_location="cpu",
                      weights_only=False)
    module = get_method(ckpt["impl"])
    width = int(ckpt["state"].get("code_bits", ckpt["bits"]))
    return Encoder(module, ckpt["state"], dict(attrs["params"]), width, attrs)


# --- 4. the database and the ranking --------------------------------------------------------------


@dataclass
class Database:
    """Packed codes to search, with each row's image: ``ids``, full ``paths``, ``sets`` (the
    part a row comes from: ``retrieval`` or ``index:NAME``) and ground-truth label names."""

    codes: np.ndarray
    ids: np.ndarray
    paths: list[str]
    sets: list[str]
    labels: list[list[str]] = field(default_factory=list)


def _part(codes_path: Path, split_path: Path, name: str, only_retrieval: bool) -> Database:
    cd, _ = read_h5(codes_path, ["ids", "codes", "split", "valid"], stage="codes")
    sp, sattrs = read_h5(split_path, ["ids", "paths", "labels"], stage="split")
    keep = cd["valid"].astype(bool)
    if only_retrieval:
        keep &= cd["split"] == RETRIEVAL
    row = {int(i): r for r, i in enumerate(sp["ids"])}
    missing = [int(i) for i in cd["ids"][keep] if int(i) not in row]
    if missing:
        raise ValueError(f"{codes_path} holds ids {missing[:5]} that {split_path} does not; "
                         "rebuild the codes")
    rows = np.array([row[int(i)] for i in cd["ids"][keep]], dtype=np.int64)
    root = Path(sattrs.get("image_root", "."))
    names = list(sattrs.get("class_names") or [])
    labels = [[names[c] for c in np.flatnonzero(sp["labels"][r])] for r in rows] if names \
        else [[] for _ in rows]
    return Database(cd["codes"][keep], cd["ids"][keep],
                    [str(root / p) for p in sp["paths"][rows]], [name] * len(rows), labels)


def load_database(files: DatasetFiles, method: str, bits: int, index: str | None = None,
                  index_only: bool = False) -> Database:
    """The retrieval set's valid codes, then (``index``) the index's, in that order: at equal
    distance a retrieval image ranks before an index image. ``index_only``: the index alone."""
    parts = []
    if not index_only:
        codes = files.codes(method, bits)
        parts.append(_part(require(codes, files.target(codes)),
                           require(files.split, files.target(files.split)), "retrieval", True))
    if index is not None:
        codes, split = files.index_codes(index, method, bits), files.index_split(index)
        parts.append(_part(require(codes, files.target(codes)),
                           require(split, files.target(split)), f"index:{index}", False))
    if not parts:
        raise ValueError("--index-only needs --index NAME")
    return Database(np.concatenate([p.codes for p in parts]),
                    np.concatenate([p.ids for p in parts]),
                    [x for p in parts for x in p.paths], [x for p in parts for x in p.sets],
                    [x for p in parts for x in p.labels])


def rank(query_codes: np.ndarray, db: Database, k: int) -> list[list[dict[str, Any]]]:
    """Hamming top-``k`` of each packed query code in ``db``: the evaluation's ranking
    (distance, then database row ascending). One list of hits per query."""
    from pipeline.retrieval.hamming import hamming_topk

    if len(db.codes) == 0:
        raise ValueError("the database holds no valid codes")
    idx, dist = hamming_topk(query_codes, db.codes, k, device="numpy")
    return [[{"rank": r + 1, "id": int(db.ids[j]), "path": db.paths[j], "set": db.sets[j],
              "hamming": int(d), "labels": db.labels[j] if db.labels else []}
             for r, (j, d) in enumerate(zip(ids, ds, strict=True))]
            for ids, ds in zip(idx, dist, strict=True)]


# --- all four steps -------------------------------------------------------------------------------


@dataclass
class Hashed:
    """New images hashed: bool ``codes`` (N, width), ``aux`` labels, per-step ``seconds``."""

    codes: np.ndarray
    aux: np.ndarray
    seconds: dict[str, float]


def hash_images(paths: Sequence[str], ds: dict[str, Any], files: DatasetFiles,
                encoder: Encoder, *, device: str = "cpu", tags: Sequence[str] | None = None,
                detections: Mapping[str, Any] | None = None) -> Hashed:
    """Codes of image files, by the stages' code (module doc); ``tags`` (one comma-separated
    string of class names per image) or ``detections`` (``detections.json`` layout, image ids =
    1-based positions in ``paths``) replace the detector."""
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    X = image_features(paths, ds["features"], device, files)
    seconds["features"] = time.perf_counter() - t
    t = time.perf_counter()
    class_names = read_attrs(require(files.split, files.target(files.split)))["class_names"]
    ids = np.arange(1, len(paths) + 1, dtype=np.int64)
    if tags is not None:
        if len(tags) != len(paths):
            raise ValueError(f"--tags: give one per image ({len(paths)}), got {len(tags)}")
        Y = aux_from_tags(tags, class_names)
    else:
        check_aux_settings(ds, files)
        det = detections if detections is not None else run_detector(
            paths, ids, detector_config(ds, files), device)
        Y, _ = aux_from_detections(det, ids, class_names, ds["auxiliary"],
                                   where="--detections" if detections is not None else "detector")
    seconds["detector"] = time.perf_counter() - t
    t = time.perf_counter()
    codes = encoder.encode(X, Y)
    seconds["encode"] = time.perf_counter() - t
    return Hashed(codes, Y, seconds)


def search_images(paths: Sequence[str], ds: dict[str, Any], files: DatasetFiles, method: str,
                  bits: int, k: int, *, index: str | None = None, index_only: bool = False,
                  device: str = "cpu", tags: Sequence[str] | None = None,
                  detections: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Hash ``paths`` and rank the database for each: the JSON-able result of ``search``."""
    db = load_database(files, method, bits, index, index_only)
    codes_file = files.codes(method, bits) if not index_only else \
        files.index_codes(str(index), method, bits)
    encoder = load_encoder(codes_file, files)
    if index is not None and not index_only:
        other = read_attrs(files.index_codes(index, method, bits))
        if other.get("model_file") != encoder.codes_attrs.get("model_file") or \
                other.get("params") != encoder.codes_attrs.get("params"):
            raise ValueError(f"{files.index_codes(index, method, bits)} was encoded with another "
                             f"model or parameters than {codes_file}; rebuild it")
    hashed = hash_images(paths, ds, files, encoder, device=device, tags=tags,
                         detections=detections)
    packed = pack_codes(hashed.codes)
    t = time.perf_counter()
    hits = rank(packed, db, k)
    hashed.seconds["search"] = time.perf_counter() - t
    class_names = read_attrs(files.split)["class_names"]
    queries = [{"image": str(p), "code": "".join("1" if b else "0" for b in code),
                "code_hex": row.tobytes().hex(),
                "aux_labels": [class_names[c] for c in np.flatnonzero(y)], "results": h}
               for p, code, row, y, h in zip(paths, hashed.codes, packed, hashed.aux, hits,
                                             strict=True)]
    return {"dataset": files.dataset, "method": method, "bits": int(bits), "k": int(k),
            "codes_file": str(codes_file), "model_file": encoder.codes_attrs.get("model_file"),
            "database": {"retrieval": 0 if index_only else sum(s == "retrieval" for s in db.sets),
                         "index": index, "n_codes": len(db.codes)},
            "tie_order": "Hamming distance, then database row (retrieval rows first, then the "
                         "index's, each in file order)",
            "seconds": hashed.seconds, "queries": queries}


def load_detections(path: str | Path) -> dict[str, Any]:
    """A ``--detections`` file in ``detections.json``'s layout (``categories`` and
    ``detections``; ``image_id`` = 1-based position of the image on the command line)."""
    with open(require(path)) as fh:
        det = json.load(fh)
    if not isinstance(det, dict) or "detections" not in det or "categories" not in det:
        raise ValueError(f"{path}: give a JSON object with 'categories' ([{{id, name}}]) and "
                         "'detections' ([{image_id, category_id, score}]), as detections.json")
    return det


__all__ = ["DatasetFiles", "Database", "Encoder", "Hashed", "aux_from_tags", "hash_images",
           "load_config", "load_database", "load_detections", "load_encoder", "rank", "require",
           "search_images"]
