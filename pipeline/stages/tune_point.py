"""Stage ``tune_point``: validation MAP of one LAGNH grid point (:mod:`pipeline.tuning`).

``python -m pipeline.stages.tune_point --split S --features F --aux A --point-json '{...}'
--tune-json '{...}' --seed 0 --out point.json``

Reads the training rows only; trains once on the rest of them for the largest of the point's
epochs and scores the states saved at each listed epoch on the validation split.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

from pipeline.artifacts import write_json
from pipeline.device import set_threads
from pipeline.tuning import load_training_rows, score_point

log = logging.getLogger("pipeline.tune_point")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.tune_point", description=__doc__)
    p.add_argument("--split", required=True)
    p.add_argument("--features", required=True)
    p.add_argument("--aux", required=True)
    p.add_argument("--point-json", required=True, help="override, params, epochs")
    p.add_argument("--tune-json", required=True, help="the config's tune settings")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    set_threads(a.threads)
    point, tune = json.loads(a.point_json), json.loads(a.tune_json)
    data = load_training_rows(a.split, a.features, a.aux, labels=tune["relevance"] == "labels")
    log.info("point %s: 1 training of %d epochs on the rest of %d training images",
             point["override"], max(point["epochs"]), len(data["X"]))
    t0 = time.time()
    rows = score_point(data, int(tune["bits"]), point["params"], point["epochs"], a.seed, tune)
    for r in rows:
        log.info("epochs %d: validation MAP %.4f", r["epochs"], r["map"])
    out = {"params": point["override"], "rows": rows, "seconds": time.time() - t0,
           "n_train_images": len(data["X"])}
    write_json(out, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
