"""``python -m pipeline inspect FILE.h5`` | ``python -m pipeline search ...``.

Tools for looking at results by hand, not workflow stages (those are :mod:`pipeline.stages`).
"""

from __future__ import annotations

import argparse
import sys


def build_search_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline search",
                                description="Search: the Hamming top-k retrieval images for an "
                                            "image that is already encoded.")
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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["search"]:
        return search_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m pipeline",
                                description="inspect FILE.h5 | search --help")
    sub = p.add_subparsers(dest="cmd", required=True)
    ins = sub.add_parser("inspect", help="print an artifact's schema, attrs and statistics")
    ins.add_argument("files", nargs="+")
    sub.add_parser("search", help="top-k images for an encoded image (see search --help)")
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
