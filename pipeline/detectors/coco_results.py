"""Your own detector: a COCO results json you already have → ``detections.h5``.

Detector kind ``coco_results`` (config ``detector: {kind: coco_results, path: results.json}``).
The file is what COCO-style detectors write (Detectron2, MMDetection, YOLO exporters,
``pycocotools``' ``loadRes``): a JSON list of ``{"image_id", "category_id", "score", "bbox"}``
(a dict with such a list under ``annotations`` is accepted too). It is read as a stream
(:func:`iter_json_list`), so a file of millions of detections does not become millions of
Python objects; what is kept is 28 bytes a detection (about 60 at the peak, while they are sorted
by image: ``benchmarks/bench_detections.py``).

**Images.** An entry with a ``file_name`` is matched by it to the split's image paths (relative
to ``source.images``, as the instances file's ``file_name``; a bare name is matched to the one
image of that name); an entry without one is matched by ``image_id`` to the split's ids (for a
COCO-format collection: the instances file's image ids). Detections of images of the collection
that are not in the split (``split.retrieval`` left some out, ``empty_images: drop``) are
ignored and counted; an image the collection does not have stops the stage, naming it.

**Classes.** ``category_id`` values mean what the ``categories`` list says (``{"id", "name"}``):
by default the collection's instances file's ``categories`` (a detector trained on your own
annotations); ``detector.categories`` names another: ``coco2017`` (an off-the-shelf
COCO-trained detector: MS COCO 2017's 80 classes and ids), or a json file with a
``categories`` list (a COCO instances file of the detector's training data) or the list
itself. A ``category_id`` not in that list stops the stage, naming it. The names then reach the
dataset's classes as every detector's do (``auxiliary.class_map``).
"""

from __future__ import annotations

import json
import logging
import os
from array import array
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import schema
from pipeline.data.coco import COCO2017_CATEGORIES

log = logging.getLogger("pipeline.detect")

#: ``detector.categories`` value naming MS COCO 2017's 80 classes
COCO2017 = "coco2017"


def _merged(cfg: Mapping[str, Any]) -> dict[str, Any]:
    return schema.fill("detector", {"kind": "coco_results", **cfg})


def iter_json_list(path: str | os.PathLike, chunk: int = 1 << 20) -> Iterator[Any]:
    """The items of a JSON file's top-level list (or of its ``annotations`` list), one at a
    time: memory holds ``chunk`` characters and one item, not the whole file.

    Raises:
        ValueError: naming the file and the character offset, when it is not such a list.

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        ...     _ = fh.write('[{"image_id": 1}, {"image_id": 2} ]')
        >>> [d["image_id"] for d in iter_json_list(fh.name, chunk=4)]
        [1, 2]
    """
    dec = json.JSONDecoder()
    with open(path, encoding="utf-8") as fh:
        buf, pos, base, eof = "", 0, 0, False

        def more() -> bool:
            nonlocal buf, pos, base, eof
            if eof:
                return False
            data = fh.read(chunk)
            eof = not data
            base += pos
            buf, pos = buf[pos:] + data, 0
            return bool(data)

        def skip_ws() -> str:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buf) or not more():
                    return buf[pos] if pos < len(buf) else ""

        def bad(what: str) -> ValueError:
            return ValueError(f"{path}: not a COCO results json ({what} at character "
                              f"{base + pos}); it must be a list of {{\"image_id\", "
                              "\"category_id\", \"score\", \"bbox\"}")

        first = skip_ws()
        if first == "{":  # a COCO file with the results under "annotations"
            while not eof:
                more()
            try:
                doc = json.loads(buf)
            except json.JSONDecodeError as e:
                raise bad(str(e)) from None
            if not isinstance(doc.get("annotations"), list):
                raise bad("a JSON object without an 'annotations' list")
            yield from doc["annotations"]
            return
        if first != "[":
            raise bad("no '['")
        pos += 1
        if skip_ws() == "]":
            return
        while True:
            skip_ws()
            while True:
                try:
                    item, end = dec.raw_decode(buf, pos)
                except json.JSONDecodeError as e:
                    if more():
                        continue
                    raise bad(e.msg) from None
                if end == len(buf) and not eof and more():
                    continue  # a number may go on in the next chunk
                break
            yield item
            pos = end
            sep = skip_ws()
            if sep == "]":
                return
            if sep != ",":
                raise bad(f"expected ',' or ']', found {sep!r}" if sep else "unexpected end")
            pos += 1


def load_categories(spec: str | None, instances: str | os.PathLike | None = None
                    ) -> tuple[list[dict[str, Any]], str]:
    """The detector's classes ``[{"id", "name"}]`` and where they came from.

    Args:
        spec: ``detector.categories``: ``None`` (take them from ``instances``), ``coco2017``,
            or a json file holding a ``categories`` list or the list itself.
        instances: the collection's COCO instances file (``source.instances``).

    Raises:
        ValueError: naming the file and the fix, when there is no list of ``{"id", "name"}``.
    """
    if spec == COCO2017:
        return [{"id": cid, "name": name} for cid, name in COCO2017_CATEGORIES], COCO2017
    path = spec if spec is not None else instances
    key = "detector.categories" if spec is not None else "source.instances"
    if path is None:
        raise ValueError("detector.categories: this collection has no instances file to take "
                         "the detector's classes from; set detector.categories to coco2017 or "
                         "to a json file with a 'categories' list")
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{key}: cannot read {path} ({e})") from None
    cats = doc.get("categories") if isinstance(doc, dict) else doc
    if not isinstance(cats, list) or not cats or not all(
            isinstance(c, dict) and "id" in c and "name" in c for c in cats):
        raise ValueError(f"{key}: {path} has no list of categories {{\"id\", \"name\"}}; set "
                         "detector.categories to coco2017 (a COCO-trained detector) or to a "
                         "json file listing your detector's classes")
    return [{"id": int(c["id"]), "name": str(c["name"])} for c in cats], str(path)


def collection_images(instances: str | os.PathLike | None
                      ) -> tuple[set[int], set[str]] | None:
    """Image ids and file names of the whole collection (its instances file), to tell an
    image left out of the split from one the collection does not have; ``None`` without one."""
    if instances is None:
        return None
    with open(instances, encoding="utf-8") as fh:
        images = json.load(fh).get("images") or []
    return ({int(im["id"]) for im in images},
            {str(im.get("file_name")) for im in images} | {
                Path(str(im.get("file_name"))).name for im in images})


def read_results(path: str | os.PathLike, ids: np.ndarray, paths: Sequence[str],
                 categories: Sequence[Mapping[str, Any]], cfg: Mapping[str, Any],
                 collection: tuple[set[int], set[str]] | None = None
                 ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A COCO results json → the split's detections, grouped by image in split order.

    Args:
        path: the results json (module docstring).
        ids, paths: the split's image ids and paths (``split.h5``).
        categories: the detector's classes (:func:`load_categories`).
        cfg: the ``detector`` section (``score_floor``: lower scores are not kept).
        collection: :func:`collection_images` (``None``: images not in the split are ignored).

    Returns:
        ``n_detections`` (N,), ``det_category_id``, ``det_score``, ``det_bbox`` (the columns of
        :meth:`pipeline.detectors.store.DetectionWriter.add`) and counts for the log and attrs.

    Raises:
        ValueError: naming them and the fix, for images the collection does not have, category
            ids the categories do not list, and entries lacking a key.
    """
    floor = float(_merged(cfg)["score_floor"])
    row_of_id = {int(i): r for r, i in enumerate(np.asarray(ids).tolist())}
    row_of_file = {str(p): r for r, p in enumerate(paths)}
    by_name: dict[str, int | None] = {}
    for r, p in enumerate(paths):
        name = Path(str(p)).name
        by_name[name] = None if name in by_name else r  # None: the name is not unique
    known_cats = {int(c["id"]) for c in categories}
    rows, cats = array("i"), array("i")  # 4 + 4 + 4 + 16 bytes a detection kept
    scores, boxes = array("f"), array("f")
    unknown_images: dict[Any, int] = {}
    unknown_cats: dict[int, int] = {}
    counts = {"n_entries": 0, "by_file_name": 0, "by_image_id": 0, "outside_split": 0,
              "below_score_floor": 0}
    for k, d in enumerate(iter_json_list(path)):
        counts["n_entries"] += 1
        try:
            cid, score = int(d["category_id"]), float(d["score"])
            image_id = d.get("image_id")
            file_name = d.get("file_name")
            if file_name is None:
                image_id = int(image_id)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ValueError(f"{path}: entry {k} ({str(d)[:120]}) lacks an image_id (or "
                             "file_name), a category_id or a score") from None
        if file_name is not None:
            counts["by_file_name"] += 1
            r = row_of_file.get(str(file_name))
            if r is None:
                r = by_name.get(Path(str(file_name)).name)
            known = collection is not None and (str(file_name) in collection[1]
                                                 or Path(str(file_name)).name in collection[1])
            key: Any = str(file_name)
        else:
            counts["by_image_id"] += 1
            r = row_of_id.get(image_id)
            known = collection is not None and image_id in collection[0]
            key = image_id
        if cid not in known_cats:
            unknown_cats[cid] = unknown_cats.get(cid, 0) + 1
        if r is None:
            if collection is None or known:
                counts["outside_split"] += 1
            else:
                unknown_images[key] = unknown_images.get(key, 0) + 1
            continue
        if score < floor:
            counts["below_score_floor"] += 1
            continue
        bbox = d.get("bbox") or [0.0, 0.0, 0.0, 0.0]
        rows.append(r)
        cats.append(cid)
        scores.append(score)
        boxes.extend([float(v) for v in bbox[:4]] + [0.0] * (4 - len(bbox[:4])))
    problems = []
    if unknown_images:
        names = sorted(unknown_images, key=str)
        problems.append(
            f"{len(names)} images the collection does not have: {names[:10]}"
            f"{' …' if len(names) > 10 else ''}; the results must use the instances file's "
            "image ids, or give each entry the image's 'file_name' (relative to the images "
            "folder) to match by name")
    if unknown_cats:
        problems.append(
            f"category ids not among the detector's categories: {sorted(unknown_cats)[:20]}; "
            "set detector.categories to the json listing the classes your detector was "
            "trained on (or to coco2017 for a COCO-trained detector)")
    if problems:
        raise ValueError(f"{path}: " + "\n  ".join(problems))
    if counts["n_entries"] and not rows and counts["outside_split"] == counts["n_entries"]:
        raise ValueError(f"{path}: none of its {counts['n_entries']} detections is of an image "
                         "of the split; check that it was made for this collection")
    row = np.frombuffer(rows, np.int32)
    order = np.argsort(row, kind="stable")  # image by image, file order within an image
    return ({"n_detections": np.bincount(row, minlength=len(paths)).astype(np.int32),
             "det_category_id": np.frombuffer(cats, np.int32)[order],
             "det_score": np.frombuffer(scores, np.float32)[order],
             "det_bbox": np.frombuffer(boxes, np.float32).reshape(-1, 4)[order]}, counts)


def categories(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The classes of ``cfg`` (``categories`` resolved by :func:`load_categories`; the stage
    passes the collection's instances file as ``instances``)."""
    return load_categories(cfg.get("categories"), cfg.get("instances"))[0]


def results_inputs(ds: Mapping[str, Any]) -> dict[str, str]:
    """The files the ``detect`` rule reads for a dataset section ``ds`` with kind
    ``coco_results`` (none for other kinds): the results json, the categories file if one is
    named, and the collection's instances file (default categories, images outside the split)."""
    det, src = ds["detector"], ds.get("source") or {}
    if det.get("kind") != "coco_results":
        return {}
    inputs = {"results": str(det["path"])}
    if det.get("categories") not in (None, COCO2017):
        inputs["categories"] = str(det["categories"])
    if src.get("instances"):
        inputs["instances"] = str(src["instances"])
    return inputs


def check_detector(dataset: str, ds: Mapping[str, Any]) -> None:
    """Start-up check of ``{dataset}.detector`` (the workflow calls it before any job).

    Raises:
        ValueError: naming the key and the fix: ``path``/``categories`` given to another kind;
            the results or categories file missing; no categories to be had.
    """
    det, src = ds.get("detector") or {}, ds.get("source") or {}
    where = f"config: {dataset}.detector"
    if det.get("kind") != "coco_results":
        extra = [k for k in ("path", "categories") if k in det]
        if extra:
            raise ValueError(f"{where}.{extra[0]} is read only by kind coco_results (kind is "
                             f"{det.get('kind')}); remove it or set kind: coco_results")
        return
    if src.get("kind") == "nuswide":
        return  # NUS-WIDE's auxiliary labels are its user tags: no detector runs
    for key in ("path", "categories"):
        value = det.get(key)
        if value not in (None, COCO2017) and not Path(str(value)).is_file():
            raise ValueError(f"{where}.{key}: {value} is not a file; give the "
                             + ("COCO results json your detector wrote" if key == "path" else
                                "json listing your detector's categories, or coco2017"))
    if det.get("categories") is None and not src.get("instances"):
        raise ValueError(f"{where}.categories: this collection has no instances file to take "
                         "the detector's classes from; set it to coco2017 (a COCO-trained "
                         "detector) or to a json file with a 'categories' list")


def detect(image_paths: Sequence[str], ids: np.ndarray, cfg: Mapping[str, Any],
           device: str = "cpu") -> tuple[list[dict[str, Any]], list[int]]:
    """A results file cannot be run on new images (what ``search`` would ask of a detector).

    Raises:
        ValueError: always, naming the fix: give the new images' detections from your
            detector (``search --detections``), or their class names (``--tags``).
    """
    raise ValueError("detector kind coco_results reads a results file your detector wrote; it "
                     "cannot run on new images: run your detector on them and give its output "
                     "with --detections (or their class names with --tags)")
