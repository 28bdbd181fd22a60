"""``python -m pipeline inspect FILE.h5`` | ``python -m pipeline search ...``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["search"]:
        from pipeline.search import main as search

        return search(argv[1:])
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
