"""Encode stage: hash codes of the query and retrieval images with a trained model (Eq. 13).

``python -m pipeline.encode --model model.pt --split S --features F --aux A --out codes.h5``

Writes packed codes (``np.packbits``, True = +1) of every query and retrieval row, in split.h5
order. Rows whose image was unreadable are encoded from zero features and flagged ``valid = 0``
(the features' flag), so that evaluation leaves them out of queries and database alike.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch

from pipeline.artifacts import write_h5
from pipeline.codes import pack_codes
from pipeline.device import set_threads
from pipeline.methods import get_method
from pipeline.split import TRAIN
from pipeline.stage_inputs import load_inputs

log = logging.getLogger("pipeline.encode")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.encode", description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--features", required=True)
    p.add_argument("--aux", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    set_threads(a.threads)
    ckpt = torch.load(a.model, map_location="cpu", weights_only=False)
    module = get_method(ckpt["impl"])
    inp = load_inputs(a.split, a.features, a.aux)
    rows = (inp.split != TRAIN) & (inp.split != 255)
    n_invalid = int((rows & ~inp.valid).sum())
    if n_invalid:
        log.warning("%d query/retrieval images had unreadable files; their codes (of zero "
                    "features) are flagged valid=0 and left out of evaluation", n_invalid)
    t0 = time.time()
    b = module.encode(ckpt["state"], inp.features[rows], inp.aux[rows], ckpt["params"])
    seconds = time.time() - t0
    b = np.asarray(b)
    if b.dtype != bool or b.shape != (int(rows.sum()), ckpt["bits"]):
        raise RuntimeError(f"{ckpt['impl']}.encode returned {b.dtype} {b.shape}, expected "
                           f"bool ({int(rows.sum())}, {ckpt['bits']})")
    log.info("encoded %d images in %.2f s; bit balance %.3f", len(b), seconds, b.mean())
    write_h5(a.out, {"ids": inp.ids[rows], "codes": pack_codes(b), "split": inp.split[rows],
                     "valid": inp.valid[rows].astype(np.uint8)},
             stage="codes",
             attrs={"method": ckpt["method"], "impl": ckpt["impl"], "bits": ckpt["bits"],
                    "params": ckpt["params"], "seed": ckpt["seed"], "model_file": a.model,
                    "encode_seconds": seconds, "n_invalid_images": n_invalid,
                    "bit_order": "np.packbits big-endian, 1 = +1",
                    "protocol": inp.protocol})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
