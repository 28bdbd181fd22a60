"""Stage ``demo_images``: the offline demo collection (Fashion-MNIST mosaics in COCO format).

``python -m pipeline.stages.demo_images --config-json '{...}' --out-json F --out-images DIR``

See :mod:`pipeline.data.demo` for what the images hold.
"""

from __future__ import annotations

import argparse
import json
import logging

from pipeline.data.demo import build_demo


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.demo_images",
                                description=__doc__)
    p.add_argument("--config-json", required=True)
    p.add_argument("--out-json", required=True)
    p.add_argument("--out-images", required=True)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    build_demo(json.loads(a.config_json), a.out_json, a.out_images)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
