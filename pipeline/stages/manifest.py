"""Stage ``manifest``: the first manifests of a dataset's images and split inputs.

``python -m pipeline.stages.manifest --spec-json '{...}' --images OUT.tsv --split-inputs OUT.tsv``

The rule runs once, when the manifests are missing; afterwards the workflow refreshes them when
it starts, rewriting a file only when its content changed (:mod:`pipeline.data.inventory`).
"""

from __future__ import annotations

import argparse
import json
import logging

from pipeline.data.inventory import write_manifests

log = logging.getLogger("pipeline.manifest")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.manifest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec-json", required=True,
                   help="what to cover (pipeline.data.inventory.spec), JSON")
    p.add_argument("--images", required=True, help="the image manifest to write")
    p.add_argument("--split-inputs", required=True, help="the split inputs' manifest to write")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    spec = json.loads(a.spec_json)
    written = write_manifests(spec, a.images, a.split_inputs)
    log.info("manifests for %s: %s written", spec["image_folders"] or spec["image_lists"],
             written)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
