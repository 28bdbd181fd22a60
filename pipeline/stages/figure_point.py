"""Stage ``figure_point``: MAP on the real split of one point of the paper's Figures 3-4.

``python -m pipeline.stages.figure_point --split S --features F --aux A --point-json '{...}'
--bits 32 --topk 1000 --seed 0 --out point.json``

Trains LAGNH once on all training images for the largest of the point's epochs and scores the
states saved at each listed epoch: query vs retrieval, ground-truth relevance, MAP@topk.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

from pipeline.artifacts import write_json
from pipeline.device import set_threads
from pipeline.tuning import score_point_test

log = logging.getLogger("pipeline.figure_point")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.figure_point",
                                description=__doc__)
    p.add_argument("--split", required=True)
    p.add_argument("--features", required=True)
    p.add_argument("--aux", required=True)
    p.add_argument("--point-json", required=True, help="override, params, epochs")
    p.add_argument("--bits", type=int, required=True)
    p.add_argument("--topk", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    set_threads(a.threads)
    point = json.loads(a.point_json)
    t0 = time.time()
    rows = score_point_test(a.split, a.features, a.aux, a.bits, point["params"],
                            point["epochs"], a.seed, a.topk)
    for r in rows:
        log.info("%s epochs %d: MAP %.4f", point["override"], r["epochs"], r["map"])
    out = {"params": point["override"], "rows": rows, "bits": a.bits, "topk": a.topk,
           "seconds": time.time() - t0}
    write_json(out, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
