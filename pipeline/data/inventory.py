"""Manifests of a dataset's source files, so that a changed input reruns exactly what reads it.

Snakemake reruns a job when an input file is newer than its output; it cannot see into an image
folder (a replaced, truncated or deleted image leaves the folder's own mtime as it was or moves it
for unrelated reasons), nor into files another rule unpacked (COCO's annotation json files come
out of the ``extract`` rule's archives). Two small text files stand for them:

* ``results/{dataset}/manifest/images.tsv`` — one line per image file under the dataset's image
  folder(s) (:func:`image_folders`; for ``split.protocol: lists`` without ``source.root`` /
  ``source.images``: the files the lists name): relative path, size in bytes and mtime in ns
  (``source.manifest: stat``, the default: cheap, one ``stat`` per file), or size and SHA-256
  of the content (``sha256``: reads every byte each time the workflow starts; a touched but
  unchanged file then reruns nothing). ``features`` and ``detect`` read it;
* ``results/{dataset}/manifest/split_inputs.tsv`` — the files the ``split`` stage reads
  (:func:`split_files`: list files, instances / annotation json files, NUS-WIDE's image list,
  label, tag files) with size and mtime (or SHA-256), then the paths of the images present (no
  sizes: replacing an image does not change the split, deleting or restoring one does, as
  ``split.missing_images`` decides which rows exist). ``split`` reads it.

Both are (re)written by :func:`refresh` **only when their content differs** from the file on
disk, atomically; an unchanged collection leaves their mtimes alone and so reruns nothing. The
workflow calls :func:`refresh` when it builds the job graph (``rules/common.smk``,
``manifest_inputs``), before Snakemake compares mtimes; the ``manifest`` rule
(:mod:`pipeline.stages.manifest`) writes them the first time, once the images exist.
Hidden files and folders (names starting with ``.``: partial downloads, markers) are skipped.

Example:
    >>> render([("a.jpg", 3, 7)], "stat").splitlines()[1]
    'a.jpg\\t3\\t7'
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pipeline.artifacts import atomic_path

#: first line of every manifest (a changed format rewrites the files once)
HEADER = "# lagnh-pipeline manifest v1"
MODES = ("stat", "sha256")


def _under(root: str, value: str) -> str:
    return os.path.join(root, value)  # an absolute value replaces root


def image_folders(source: dict[str, Any], split: dict[str, Any]) -> list[str]:
    """The folders holding a dataset's images (complete ``source`` and ``split`` sections);
    ``[]`` for ``split.protocol: lists`` without ``source.root`` or ``source.images`` (then
    :func:`listed_images` names the files)."""
    kind = source["kind"]
    if split["protocol"] == "lists":
        folder = source.get("root") or source.get("images")
        return [str(folder)] if folder else []
    if kind == "coco2017":
        return [_under(source["root"], source[k]) for k in ("train_images", "val_images")]
    if kind == "nuswide":
        return [_under(source["root"], source["images"])]
    return [str(source["images"])]  # demo, coco_format


def listed_images(list_files: Iterable[str]) -> list[str]:
    """The image paths ``split.protocol: lists`` files name (missing list files skipped)."""
    from pipeline.data.lists import read_list

    paths: set[str] = set()
    for name in list_files:
        if os.path.isfile(name):
            paths.update(read_list(name)[0])
    return sorted(paths)


def split_files(source: dict[str, Any], split: dict[str, Any]) -> list[str]:
    """The files the ``split`` stage reads (complete sections), whether they exist yet or not."""
    if split["protocol"] == "lists":
        names = [split[k] for k in ("train_list", "query_list", "database_list") if k in split]
        return names + ([split["class_names"]] if isinstance(split.get("class_names"), str)
                        else [])
    kind = source["kind"]
    if kind == "coco2017":
        return [_under(source["root"], source[k]) for k in ("train_instances", "val_instances")]
    if kind == "nuswide":
        labels = Path(_under(source["root"], source["labels_dir"]))
        found = sorted(str(p) for p in labels.glob("Labels_*.txt")) if labels.is_dir() else []
        return [_under(source["root"], source["image_list"]), *found,
                *(_under(source["root"], source[k]) for k in ("tag_list", "tags_file"))]
    return [str(source["instances"])]  # demo, coco_format


def _walk(folder: Path) -> Iterator[os.DirEntry]:
    """Regular files under ``folder`` (recursive, hidden names skipped), in no fixed order."""
    stack = [folder]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except FileNotFoundError:
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            if e.is_dir(follow_symlinks=True):
                stack.append(Path(e.path))
            elif e.is_file(follow_symlinks=True):
                yield e


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _entry(path: str, st: os.stat_result, mode: str) -> tuple[str, int, int | str]:
    return (path, st.st_size, st.st_mtime_ns if mode == "stat" else sha256_file(path))


def scan_images(folders: Iterable[str], mode: str = "stat",
                listed: Iterable[str] = ()) -> list[tuple[str, int, int | str]]:
    """``(path, size, mtime_ns or sha256)`` of every file under ``folders`` and of the
    ``listed`` files that exist, sorted by path (paths as found: ``folder/…``)."""
    if mode not in MODES:
        raise ValueError(f"source.manifest must be one of {MODES}, not {mode!r}")
    rows = []
    for folder in folders:
        for e in _walk(Path(folder)):
            rows.append(_entry(e.path, e.stat(follow_symlinks=True), mode))
    for p in listed:
        try:
            rows.append(_entry(p, os.stat(p), mode))
        except OSError:
            continue
    return sorted(set(rows))


def scan_files(paths: Iterable[str], mode: str = "stat") -> list[tuple[str, int, int | str]]:
    """Like :func:`scan_images` for named files; a missing one is listed as size -1."""
    rows: list[tuple[str, int, int | str]] = []
    for p in paths:
        try:
            rows.append(_entry(p, os.stat(p), mode))
        except OSError:
            rows.append((p, -1, "missing"))
    return rows


def render(rows: Iterable[tuple[str, int, int | str]], mode: str,
           present: Iterable[str] | None = None) -> str:
    """The manifest's text: a header naming the mode, ``path<TAB>size<TAB>mtime_ns|sha256``
    lines, then (``present`` given) ``image<TAB>path`` lines."""
    lines = [f"{HEADER} ({'size, mtime_ns' if mode == 'stat' else 'size, sha256'})"]
    lines += [f"{p}\t{s}\t{v}" for p, s, v in rows]
    if present is not None:
        lines += [f"image\t{p}" for p in present]
    return "\n".join(lines) + "\n"


def refresh(path: str | os.PathLike, text: str) -> bool:
    """Write ``text`` to ``path`` atomically unless the file already holds exactly it (its mtime
    then stays, so nothing that reads it reruns); returns whether it was written."""
    path = Path(path)
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return True


def spec(source: dict[str, Any], split: dict[str, Any]) -> dict[str, Any]:
    """What the manifests cover (JSON-able; the ``manifest`` rule's parameter): image folders,
    the list files naming the images when there is no folder, the split's files and the
    mode (complete sections)."""
    folders = image_folders(source, split)
    lists = [split[k] for k in ("train_list", "query_list", "database_list") if k in split]
    return {"image_folders": folders,
            "image_lists": lists if split["protocol"] == "lists" and not folders else [],
            "split_files": split_files(source, split), "mode": source["manifest"]}


def write_manifests(spec: dict[str, Any], images_out: str | os.PathLike,
                    split_inputs_out: str | os.PathLike) -> tuple[bool, bool]:
    """Scan what ``spec`` names and :func:`refresh` both manifests; returns which were
    written."""
    mode = spec["mode"]
    images = scan_images(spec["image_folders"], mode, listed_images(spec["image_lists"]))
    files = scan_files(spec["split_files"], mode)
    return (refresh(images_out, render(images, mode)),
            refresh(split_inputs_out, render(files, mode, [p for p, _, _ in images])))
