"""Stage ``split``: a dataset's source files → ``split.h5`` (ids, paths, labels, split codes).

``python -m pipeline.stages.split --source-json '{...}' --split-json '{...}' --dataset NAME
--out F.h5``

The ``source`` config names the dataset ``kind``; ``split.protocol: lists`` reads list files a
user supplies instead (:func:`pipeline.data.split_table.build_split`).
"""

from __future__ import annotations

import argparse
import json
import logging

from pipeline.data.split_table import build_split, write_split


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.split", description=__doc__)
    p.add_argument("--dataset", required=True)
    p.add_argument("--source-json", required=True, help="the dataset's source config (JSON)")
    p.add_argument("--split-json", required=True, help="the dataset's split config (JSON)")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    source, split = json.loads(a.source_json), json.loads(a.split_json)
    write_split(build_split(source, split), a.out, a.dataset, split.get("seed"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
