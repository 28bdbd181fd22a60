"""``python -m pipeline inspect FILE.h5`` | ``python -m pipeline search ...`` |
``python -m pipeline mosaic ...``.

Tools for looking at results by hand, not workflow stages (those are :mod:`pipeline.stages`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys


def build_search_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline search",
                                description="Search: the Hamming top-k retrieval images for an "
                                            "image that is already encoded. For an image file "
                                            "the pipeline has not seen: search --dataset D "
                                            "--bits R --image PATH (search --image x --help).")
    p.add_argument("--codes", required=True, help="results/{dataset}/codes/{method}_{bits}.h5")
    p.add_argument("--split", required=True, help="results/{dataset}/split.h5")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--id", type=int, dest="image_id", help="image id (split.h5 'ids')")
    who.add_argument("--path", help="image path as in split.h5 'paths' (or its tail)")
    p.add_argument("--k", type=int, default=10, help="number of results (default 10)")
    return p


def search_main(argv: list[str] | None = None) -> int:
    """``python -m pipeline search ...``: prints a table to stdout, returns the exit status
    (see :mod:`pipeline.retrieval.search`)."""
    from pipeline.retrieval.search import search

    a = build_search_parser().parse_args(argv)
    try:
        if a.k < 1:
            raise ValueError("--k must be >= 1")
        hits = search(a.codes, a.split, image_id=a.image_id, path=a.path, k=a.k)
    except (FileNotFoundError, KeyError, ValueError, OSError) as e:
        print(f"search: error: {e}", file=sys.stderr)
        return 2
    print(f"{'rank':>4}  {'id':>12}  {'hamming':>7}  {'relevant':>8}  path")
    for h in hits:
        print(f"{h['rank']:>4}  {h['id']:>12}  {h['hamming']:>7}  "
              f"{'yes' if h['relevant'] else 'no':>8}  {h['path']}")
    return 0


def build_image_search_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline search",
        description="Search with new images: hash image files the pipeline has never seen with "
                    "the stages' code and cached artifacts (features, detector, thresholding, "
                    "trained model), then rank the dataset's retrieval codes (and an index's) "
                    "by Hamming distance. Prints JSON (or writes --out).")
    p.add_argument("--dataset", required=True, help="a dataset section of the config")
    p.add_argument("--bits", type=int, required=True, help="code length")
    p.add_argument("--image", nargs="+", required=True, metavar="PATH", help="image file(s)")
    p.add_argument("-k", "--k", type=int, default=20, help="results per image (default 20)")
    p.add_argument("--method", default="lagnh", help="methods row (default lagnh)")
    p.add_argument("--index", default=None, metavar="NAME",
                   help="also search results/{dataset}/index/NAME/codes/{method}_{bits}.h5 "
                        "(after the retrieval set at equal distance)")
    p.add_argument("--index-only", action="store_true", help="search the index alone")
    aux = p.add_mutually_exclusive_group()
    aux.add_argument("--detections", default=None, metavar="JSON",
                     help="detections of the images, a JSON object {categories: [{id, name}], "
                          "detections: [{image_id, category_id, score}]} with image_id = "
                          "1-based position in --image, instead of running the detector")
    aux.add_argument("--tags", nargs="+", default=None, metavar="CLASSES",
                     help="auxiliary labels: one comma-separated list of class names per "
                          "image ('' for none) instead of the detector")
    p.add_argument("--configfile", nargs="+", default=["config.yaml"],
                   help="config file(s), merged in order (default config.yaml)")
    p.add_argument("--device", default=None,
                   help="cpu, cuda or auto (default: the dataset's device, as the stages)")
    p.add_argument("--threads", type=int, default=2,
                   help="CPU threads (default 2, as the features and encode rules: the CPU's "
                        "last bits depend on the thread count)")
    p.add_argument("--out", default=None, help="write the JSON here instead of stdout")
    p.add_argument("--gallery", default=None, metavar="PNG",
                   help="also draw each image and its top-k into this PNG")
    return p


def image_search_main(argv: list[str]) -> int:
    """``python -m pipeline search --dataset D --bits R --image PATH ...`` (see
    :mod:`pipeline.retrieval.new_images`)."""
    from pipeline.artifacts import atomic_path, write_json
    from pipeline.retrieval.new_images import (
        DatasetFiles,
        load_config,
        load_detections,
        search_images,
    )

    a = build_image_search_parser().parse_args(argv)
    try:
        if a.k < 1:
            raise ValueError("-k must be >= 1")
        ds = load_config(a.configfile, a.dataset)
        det = load_detections(a.detections) if a.detections else None
        from pipeline.device import pick_device, set_threads

        set_threads(a.threads)
        device = pick_device(a.device or ds["device"])
        with contextlib.redirect_stdout(sys.stderr):  # libraries that print keep stdout JSON
            result = search_images(a.image, ds, DatasetFiles(a.dataset), a.method, a.bits,
                                   a.k, index=a.index, index_only=a.index_only,
                                   device=device, tags=a.tags, detections=det)
        if a.gallery:
            from pipeline.plots.neighbours import render_search_gallery

            with atomic_path(a.gallery) as tmp:
                render_search_gallery(result).save(tmp, format="PNG")
    except (FileNotFoundError, KeyError, ValueError, OSError, RuntimeError) as e:
        print(f"search: error: {e}", file=sys.stderr)
        return 2
    if a.out:
        write_json(result, a.out)
    else:
        print(json.dumps(result, indent=1))
    return 0


def mosaic_main(argv: list[str]) -> int:
    """``python -m pipeline mosaic --classes 3 7 --out new.png``: a new demo-like mosaic."""
    from pipeline.data.demo import new_mosaic

    p = argparse.ArgumentParser(
        prog="python -m pipeline mosaic",
        description="A new image made like the demo's mosaics (the demo's own compose code) "
                    "from Fashion-MNIST training items that no demo image uses.")
    p.add_argument("--classes", nargs="+", required=True,
                   help="class of each item: index 0-9 or name (e.g. 3 7, or Dress Sneaker)")
    p.add_argument("--out", required=True, help="image file to write (.png or .jpg)")
    p.add_argument("--instances", default=None,
                   help="the demo's instances file, whose items are not reused (default: the "
                        "dataset's source.instances)")
    p.add_argument("--configfile", nargs="+", default=["config.yaml"])
    p.add_argument("--dataset", default="demo")
    p.add_argument("--seed", type=int, default=0, help="chooses items, cells and offsets")
    a = p.parse_args(argv)
    from pipeline.retrieval.new_images import load_config

    try:
        source = load_config(a.configfile, a.dataset)["source"]
        if source["kind"] != "demo":
            raise ValueError(f"dataset {a.dataset} is not a demo collection (source.kind "
                             f"{source['kind']})")
        info = new_mosaic(a.classes, source["build"], a.instances or source["instances"],
                          a.out, seed=a.seed)
    except (FileNotFoundError, KeyError, ValueError, OSError) as e:
        print(f"mosaic: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(info))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["search"]:
        if "--image" in argv:
            return image_search_main(argv[1:])
        return search_main(argv[1:])
    if argv[:1] == ["mosaic"]:
        return mosaic_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m pipeline",
                                description="inspect FILE.h5 | search --help | mosaic --help")
    sub = p.add_subparsers(dest="cmd", required=True)
    ins = sub.add_parser("inspect", help="print an artifact's schema, attrs and statistics")
    ins.add_argument("files", nargs="+")
    sub.add_parser("search", help="top-k images for an encoded image, or for new image files "
                                  "(--dataset D --bits R --image PATH; see search --help)")
    sub.add_parser("mosaic", help="a new demo-like mosaic image (see mosaic --help)")
    a = p.parse_args(argv)
    from pipeline.artifacts import describe

    for f in a.files:
        try:
            print(describe(f))
        except (OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
