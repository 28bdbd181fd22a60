"""Stage ``index_split``: an additional image collection's table → index ``split.h5``.

``python -m pipeline.stages.index_split --dataset-split results/D/split.h5 --dataset D
--name NAME --index-json '{"images": ..., "instances": ...}' --out results/D/index/NAME/split.h5``

Every row is a database row; label columns are the dataset's classes
(:func:`pipeline.data.index_collection.index_table`).
"""

from __future__ import annotations

import argparse
import json
import logging

from pipeline.artifacts import read_attrs
from pipeline.data.index_collection import index_table
from pipeline.data.split_table import write_split


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.index_split", description=__doc__)
    p.add_argument("--dataset-split", required=True, help="the dataset's split.h5 (classes)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--name", required=True, help="the index's name (config index.NAME)")
    p.add_argument("--index-json", required=True, help="the config section index.NAME")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    section = json.loads(a.index_json)
    classes = read_attrs(a.dataset_split)["class_names"]
    try:
        table = index_table(section["images"], section.get("instances"), classes, a.name)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"index {a.name}: {e}") from None
    write_split(table, a.out, a.dataset, None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
