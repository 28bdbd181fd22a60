"""Stage ``cell_classifier``: train the demo's detector (an MLP classifying mosaic cells).

``python -m pipeline.stages.cell_classifier --config-json '{...}' --out model.pt [--threads N]``

See :mod:`pipeline.detectors.cell_mlp`.
"""

from __future__ import annotations

import argparse
import json
import logging

import torch

from pipeline.artifacts import atomic_path
from pipeline.detectors.cell_mlp import train


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.cell_classifier",
                                description=__doc__)
    p.add_argument("--config-json", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if a.threads:
        torch.set_num_threads(a.threads)
    ckpt = train(json.loads(a.config_json))
    with atomic_path(a.out) as tmp:
        torch.save(ckpt, tmp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
