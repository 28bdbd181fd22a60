"""Stage ``extract``: unpack a downloaded zip atomically, then write a marker file.

``python -m pipeline.stages.extract --archive ZIP --dest DIR [--marker DIR/.NAME.extracted]``

See :func:`pipeline.data.archives.extract`.
"""

from __future__ import annotations

import argparse
import logging

from pipeline.data.archives import extract


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.extract",
                                description="Unpack a zip atomically, then write a marker.")
    p.add_argument("--archive", required=True)
    p.add_argument("--dest", required=True)
    p.add_argument("--marker", help="marker file (default DEST/.<archive stem>.extracted)")
    a = p.parse_args(argv)
    extract(a.archive, a.dest, a.marker)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
