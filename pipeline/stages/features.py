"""Stage ``features``: ImageNet-CNN features of every image of a split → ``features.h5``.

``python -m pipeline.stages.features --split S --backbone-json '{...}' --out features.h5
[--device auto] [--threads N] [--commit-rows N]``

Backbones, speed and resuming: see :mod:`pipeline.backbones`; ``backbone: file`` copies the
rows of a user's feature file instead (:mod:`pipeline.feature_file`; no image is read).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
from pathlib import Path
from typing import Any

from pipeline import schema
from pipeline.artifacts import read_h5
from pipeline.backbones import extract
from pipeline.device import pick_device, set_threads
from pipeline.feature_file import import_features


def _exit_on_sigterm() -> None:
    """Turn SIGTERM (a cancelled Snakemake/cluster job) into ``SystemExit`` so the partial file
    is flushed and closed cleanly before the process ends."""
    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    """CLI: read ``--split``, check every image exists, write ``--out``."""
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.features", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", required=True)
    p.add_argument("--backbone-json", required=True, help="the features config section")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default=schema.dataset_default("device"))
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--commit-rows", type=int, default=None,
                   help="rows per durable commit of the partial file (default: ~1 MiB)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    set_threads(a.threads)
    data, attrs = read_h5(a.split, ["ids", "paths"], stage="split")
    cfg = json.loads(a.backbone_json)
    provenance = {"split_file": a.split, "dataset": attrs.get("dataset"),
                  "protocol": attrs.get("protocol")}
    if cfg.get("backbone") == "file":
        try:
            import_features(cfg["path"], data["ids"], data["paths"],
                            str(attrs.get("image_root", "")), a.out, provenance)
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"features: error: {e}") from e
        return 0
    root = Path(attrs["image_root"])
    paths = [str(root / p) for p in data["paths"]]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise SystemExit(f"{len(missing)} image files listed in {a.split} are missing under "
                         f"{root}, e.g. {missing[:3]}; restore them, or set "
                         "split.missing_images: drop in the dataset's config to leave them "
                         "out of the split (rerun the split)")
    _exit_on_sigterm()
    extract(paths, data["ids"], cfg, a.out, pick_device(a.device), provenance,
            commit_rows=a.commit_rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
