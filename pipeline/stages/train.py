"""Stage ``train``: fit one hashing method at one code length on the training split.

``python -m pipeline.stages.train --method NAME --impl lagnh --bits 32 --split S --features F
--aux A --params-json '{...}' --seed 0 --out model.pt --history history.csv``

Only rows with ``split == train`` and a valid feature row are used, and only those rows of
``features.h5`` are read (by row blocks, :mod:`pipeline.stage_inputs`). Methods that choose a
setting on a validation split of the training images (``USES_TRAIN_LABELS``, e.g.
``aux_itq``) also get those images' ground-truth labels; no other row's labels are read. The
checkpoint holds the method's state with the parameters, seed and training ids that produced it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import pandas as pd

from pipeline import schema
from pipeline.artifacts import atomic_path, read_h5
from pipeline.data.split_table import TRAIN
from pipeline.device import set_threads
from pipeline.methods import get_method, uses_train_labels
from pipeline.stage_inputs import load_inputs, selected_features
from pipeline.tuning import read_json, settings_source

log = logging.getLogger("pipeline.train")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.train", description=__doc__)
    p.add_argument("--method", required=True, help="the method's name in config (row label)")
    p.add_argument("--impl", default=None, help="implementation (pipeline.methods); "
                   "default: same as --method")
    p.add_argument("--bits", type=int, required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--features", required=True)
    p.add_argument("--aux", required=True)
    p.add_argument("--params-json", default="{}")
    p.add_argument("--seed", type=int, default=schema.dataset_default("seed"))
    p.add_argument("--out", required=True)
    p.add_argument("--history", required=True)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--tune", default=None, help="the tune stage's selection, merged into "
                   "--params-json by the workflow: recorded as the settings' source")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    impl = a.impl or a.method
    module = get_method(impl)
    if "torch" in sys.modules:  # a torch method; a numpy one trains before torch is imported
        set_threads(a.threads)  # (its import alone is 0.6 GiB resident: benchmarks/README.md)
    params = json.loads(a.params_json)
    inp = load_inputs(a.split, a.features, a.aux, features=False)  # rows read below
    rows = (inp.split == TRAIN) & inp.valid
    if not rows.any():
        raise SystemExit(f"{a.split}: no training rows with valid features; check the split")
    X, Y = selected_features(inp, rows), inp.aux[rows]  # only the training rows
    log.info("training %s (%s) at %d bits on %d images, features %s, aux %s", a.method, impl,
             a.bits, len(X), X.shape[1], Y.shape[1])
    extra = {}
    if uses_train_labels(module):  # ground truth of training images: validation split only
        extra["labels"] = read_h5(a.split, ["labels"], stage="split")[0]["labels"][rows]
    t0 = time.time()
    state = module.fit(X, Y, a.bits, params, a.seed, **extra)
    seconds = time.time() - t0
    log.info("trained in %.2f s", seconds)
    tuned = read_json(a.tune) if a.tune else None
    if tuned is not None:
        if any(params.get(k) != v for k, v in tuned["selected"].items()):
            raise SystemExit(f"{a.tune}: selection {tuned['selected']} not in --params-json")
        state["selected"] = {"source": "validation", "validation_map": tuned["val_map"],
                             "relevance": tuned["relevance"], **tuned["selected"]}
    sources = settings_source(params, tuned)
    history = state.pop("history", None) or [{"step": 0, "train_seconds": seconds}]
    ckpt = {"method": a.method, "impl": impl, "bits": a.bits, "params": params,
            "seed": a.seed, "state": state, "train_ids": inp.ids[rows],
            "train_seconds": seconds, "feature_attrs": inp.feature_attrs,
            "settings_source": sources, "tune_file": a.tune}
    import torch  # only now, when the training data and the fit's temporaries are freed

    with atomic_path(a.out) as tmp:
        torch.save(ckpt, tmp)
    with atomic_path(a.history) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
