"""Stage ``index_encode``: codes of an index's images with a dataset's trained model, as the
``encode`` stage encodes the dataset's (same model file, same row parameters, same method
``encode``), so that a database grows without retraining.

``python -m pipeline.stages.index_encode --model results/D/models/M_B.pt
--split results/D/index/NAME/split.h5 --features F --aux A --method ROW --params-json '{...}'
--out results/D/index/NAME/codes/M_B.h5``

Rows follow the index's ``split.h5``; all are database rows (``split`` = retrieval);
unreadable images are flagged ``valid = 0`` and left out of ``search``.
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
from pipeline.device import set_threads
from pipeline.methods import get_method, uses_aux
from pipeline.retrieval.new_images import Encoder
from pipeline.stage_inputs import load_inputs

log = logging.getLogger("pipeline.index_encode")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.index_encode",
                                description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--split", required=True, help="the index's split.h5")
    p.add_argument("--features", required=True)
    p.add_argument("--aux", required=True)
    p.add_argument("--method", required=True, help="the methods row")
    p.add_argument("--params-json", required=True, help="the row's parameters")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    set_threads(a.threads)
    ckpt = torch.load(a.model, map_location="cpu", weights_only=False)
    module = get_method(ckpt["impl"])
    params = json.loads(a.params_json)
    inp = load_inputs(a.split, a.features, a.aux)
    width = int(ckpt["state"].get("code_bits", ckpt["bits"]))
    encoder = Encoder(module, ckpt["state"], params, width, {"impl": ckpt["impl"]})
    t0 = time.time()
    b = encoder.encode(inp.features, inp.aux)
    seconds = time.time() - t0
    log.info("encoded %d index images in %.2f s; bit balance %.3f", len(b), seconds, b.mean())
    write_h5(a.out, {"ids": inp.ids, "codes": pack_codes(b), "split": inp.split,
                     "valid": inp.valid.astype(np.uint8)},
             stage="codes",
             attrs={"method": a.method, "impl": ckpt["impl"], "bits": ckpt["bits"],
                    "code_bits": width, "uses_aux": uses_aux(module, params),
                    "params": params, "seed": ckpt["seed"], "model_file": a.model,
                    "encode_seconds": seconds, "n_invalid_images": int((~inp.valid).sum()),
                    "bit_order": "np.packbits big-endian, 1 = +1",
                    "protocol": inp.protocol, "index_split": a.split})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
