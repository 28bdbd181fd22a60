"""Stage ``encode``: hash codes of the query and retrieval images with a trained model (Eq. 13).

``python -m pipeline.stages.encode --model model.pt --split S --features F --aux A
--out codes.h5 [--method ROW --params-json '{...}']``

``--method`` and ``--params-json`` name the table row and its parameters when a row encodes
with another row's model (rows of one method that differ only in encode-time parameters,
:data:`pipeline.methods.ENCODE_ONLY`); by default both come from the checkpoint.

Writes packed codes (``np.packbits``, True = +1) of every query and retrieval row, in split.h5
order. Rows whose image was unreadable are encoded from zero features and flagged ``valid = 0``
(the features' flag), so that evaluation leaves them out of queries and database alike.

Memory: the rows are read and encoded in blocks of about
:data:`pipeline.stage_inputs.ENCODE_BLOCK_BYTES` of
features (a multiple of the method's :func:`~pipeline.methods.encode_group`, so batch-wise
codes are the same as from one call); training rows are never read.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np
import torch

from pipeline.artifacts import write_h5
from pipeline.codes import pack_codes
from pipeline.data.split_table import TRAIN, UNUSED
from pipeline.device import set_threads
from pipeline.methods import get_method, uses_aux
from pipeline.stage_inputs import encode_rows, load_inputs

log = logging.getLogger("pipeline.encode")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.encode", description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--features", required=True)
    p.add_argument("--aux", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--method", default=None, help="row name (default: the checkpoint's)")
    p.add_argument("--params-json", default=None,
                   help="the row's parameters (default: the checkpoint's)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    set_threads(a.threads)
    ckpt = torch.load(a.model, map_location="cpu", weights_only=False)
    module = get_method(ckpt["impl"])
    inp = load_inputs(a.split, a.features, a.aux, features=False)  # rows read by blocks below
    rows = (inp.split != TRAIN) & (inp.split != UNUSED)
    n_invalid = int((rows & ~inp.valid).sum())
    if n_invalid:
        log.warning("%d query/retrieval images had unreadable files; their codes (of zero "
                    "features) are flagged valid=0 and left out of evaluation", n_invalid)
    params = ckpt["params"] if a.params_json is None else json.loads(a.params_json)
    method = a.method or ckpt["method"]
    state = ckpt["state"]
    width = int(state.get("code_bits", ckpt["bits"]))
    t0 = time.time()
    b = encode_rows(module, state, params, a.features, np.flatnonzero(rows), inp.aux,
                    inp.valid)
    seconds = time.time() - t0
    if b.dtype != bool or b.shape != (int(rows.sum()), width):
        raise RuntimeError(f"{ckpt['impl']}.encode returned {b.dtype} {b.shape}, expected "
                           f"bool ({int(rows.sum())}, {width})")
    log.info("encoded %d images in %.2f s; bit balance %.3f", len(b), seconds, b.mean())
    write_h5(a.out, {"ids": inp.ids[rows], "codes": pack_codes(b), "split": inp.split[rows],
                     "valid": inp.valid[rows].astype(np.uint8)},
             stage="codes",
             attrs={"method": method, "impl": ckpt["impl"], "bits": ckpt["bits"],
                    "code_bits": width, "uses_aux": uses_aux(module, params),
                    "selected": state.get("selected") or {},
                    "settings_source": ckpt.get("settings_source") or {},
                    "train_params": ckpt["params"],
                    "params": params, "seed": ckpt["seed"], "model_file": a.model,
                    "encode_seconds": seconds, "n_invalid_images": n_invalid,
                    "bit_order": "np.packbits big-endian, 1 = +1",
                    "protocol": inp.protocol})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
