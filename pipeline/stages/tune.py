"""Stage ``tune``: the grid points' validation MAPs -> the selected LAGNH settings.

``python -m pipeline.stages.tune --inputs point_0.json ... --tune-json '{...}' --out sel.json``

Writes ``selected`` (the chosen overrides, epochs included), ``val_map``, the tune settings
(relevance, validation fractions, ...), ``n_trainings`` and every scored (point, epochs).
"""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.artifacts import write_json
from pipeline.tuning import read_json, select


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.tune", description=__doc__)
    p.add_argument("--inputs", nargs="+", required=True)
    p.add_argument("--tune-json", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    points = [read_json(path) for path in a.inputs]
    out = {**select(points), **json.loads(a.tune_json), "n_trainings": len(points),
           "scores": [{**pt["params"], **r} for pt in points for r in pt["rows"]]}
    print(f"tune: {len(points)} trainings; selected {out['selected']} with validation MAP "
          f"{out['val_map']:.4f}", file=sys.stderr)
    write_json(out, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
