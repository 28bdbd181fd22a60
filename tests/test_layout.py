"""The package layout: one stage module per Snakemake rule, named after it; no name used twice.

* every rule in ``rules/*.smk`` runs ``python -m pipeline.stages.<its own name>``;
* every module in ``pipeline/stages/`` is some rule's stage;
* no two modules or packages under ``pipeline/`` share a name (stages included);
* no module outside ``pipeline/stages/`` imports ``pipeline.stages`` (library never imports a
  stage).
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "pipeline"
STAGES = PACKAGE / "stages"

_RULE = re.compile(r"^(?:rule|checkpoint) (\w+):", re.M)
_MODULE = re.compile(r"python -m (pipeline[\w.]*)")


def rule_commands(text: str) -> dict[str, list[str]]:
    """Rule name → the modules its body runs with ``python -m`` (rules of one .smk text)."""
    starts = [(m.start(), m.group(1)) for m in _RULE.finditer(text)]
    out = {}
    for i, (pos, name) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        out[name] = _MODULE.findall(text[pos:end])
    return out


def all_rules() -> dict[str, list[str]]:
    rules: dict[str, list[str]] = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        rules.update(rule_commands(smk.read_text()))
    return rules


def stage_modules() -> set[str]:
    return {p.stem for p in STAGES.glob("*.py") if p.stem != "__init__"}


def test_every_rule_runs_its_own_stage() -> None:
    rules = {name: mods for name, mods in all_rules().items() if name != "all"}
    assert rules, "no rules found in rules/*.smk"
    wrong = {name: mods for name, mods in rules.items()
             if mods != [f"pipeline.stages.{name}"]}
    assert not wrong, f"rules not running python -m pipeline.stages.<rule>: {wrong}"


def test_every_stage_module_belongs_to_a_rule() -> None:
    orphans = stage_modules() - set(all_rules())
    assert not orphans, f"modules in pipeline/stages/ without a rule of that name: {orphans}"


def test_no_module_or_package_name_twice() -> None:
    where = defaultdict(list)
    for path in PACKAGE.rglob("*"):
        if "__pycache__" in path.parts:
            continue
        if path.is_dir() and (path / "__init__.py").exists() and path != PACKAGE:
            where[path.name].append(path.relative_to(REPO))
        elif path.suffix == ".py" and not path.stem.startswith("__"):
            where[path.stem].append(path.relative_to(REPO))
    twice = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert not twice, f"names used more than once under pipeline/: {twice}"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_library_never_imports_a_stage() -> None:
    bad = {}
    for path in PACKAGE.rglob("*.py"):
        if STAGES in path.parents:
            continue
        hits = sorted(n for n in _imports(path)
                      if n == "pipeline.stages" or n.startswith("pipeline.stages."))
        if hits:
            bad[str(path.relative_to(REPO))] = hits
    assert not bad, f"library modules importing stages: {bad}"


def test_checks_see_a_wrong_rule() -> None:
    # the parsing above must notice a rule running another rule's stage
    text = 'rule split:\n    shell:\n        "python -m pipeline.stages.features --x {y} "\n'
    assert rule_commands(text) == {"split": ["pipeline.stages.features"]}
