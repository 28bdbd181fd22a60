"""Stage ``index_features``: features of an index's images, as the ``features`` stage computes
the dataset's (same backbone section, same :func:`pipeline.backbones.extract`).

``python -m pipeline.stages.index_features --split results/D/index/NAME/split.h5
--backbone-json '{...}' --out results/D/index/NAME/features.h5 [--device auto] [--threads N]``
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from pipeline import schema
from pipeline.artifacts import read_h5
from pipeline.backbones import extract
from pipeline.device import pick_device, set_threads


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.index_features",
                                description=__doc__)
    p.add_argument("--split", required=True, help="the index's split.h5")
    p.add_argument("--backbone-json", required=True, help="the dataset's features section")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default=schema.dataset_default("device"))
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    set_threads(a.threads)
    data, attrs = read_h5(a.split, ["ids", "paths"], stage="split")
    root = Path(attrs["image_root"])
    paths = [str(root / p) for p in data["paths"]]
    extract(paths, data["ids"], json.loads(a.backbone_json), a.out, pick_device(a.device),
            {"split_file": a.split, "dataset": attrs.get("dataset"),
             "index": attrs.get("index"), "protocol": attrs.get("protocol")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
