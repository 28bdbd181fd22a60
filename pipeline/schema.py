"""The config schema (``schemas/config.schema.yaml``): the one place a config default lives.

Snakemake validates the config against the schema when the workflow starts and fills every
default (``validate(..., set_default=True)``), so a stage receives complete sections and the
library indexes keys directly. Code called outside Snakemake (tests, benchmarks, a notebook)
completes a partial section with :func:`fill`, which applies the same defaults the same way;
no module keeps a copy of a default (``tests/test_defaults.py`` checks).

Sections are named as keys of a dataset section (``"lagnh"``, ``"detector"``, ``"split"``,
...), nested ones with dots (``"detector.train"``, ``"source.build"``).

Example:
    >>> defaults("eval")["topk"]
    1000
    >>> fill("detector", {"kind": "faster_rcnn", "batch_size": 2})["batch_size"]
    2
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

#: the schema file; it ships with the repository, next to the ``pipeline`` package
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


@functools.cache
def _load() -> dict[str, Any]:
    import yaml  # imported on use: the workflow's driver reads the schema itself

    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def load() -> dict[str, Any]:
    """A copy of the whole schema."""
    return copy.deepcopy(_load())


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    """``node`` with a local ``$ref`` followed (its sibling keywords kept, as in 2020-12)."""
    while "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"schema: only local $ref are supported, got {ref!r}")
        target: Any = _load()
        for part in ref[2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def section(name: str) -> dict[str, Any]:
    """The schema of the dataset section ``name`` (dots for nested sections), $ref resolved.

    Raises ``KeyError`` naming the known sections for an unknown name.
    """
    node = _resolve(_load()["$defs"]["dataset"])
    path = []
    for part in name.split("."):
        props = node.get("properties", {})
        if part not in props:
            where = ".".join(path) or "a dataset section"
            raise KeyError(f"schema: {where} has no section {part!r}; known: {sorted(props)}")
        node = _resolve(props[part])
        path.append(part)
    return node


def _matches(condition: dict[str, Any], instance: dict[str, Any]) -> bool:
    """Whether ``instance`` meets an ``if`` made of ``required`` and ``const``/``enum`` keys
    (the only conditions the schema uses)."""
    unknown = set(condition) - {"properties", "required"}
    if unknown:
        raise NotImplementedError(f"schema: 'if' with {sorted(unknown)} is not supported")
    if any(key not in instance for key in condition.get("required", ())):
        return False
    for key, sub in condition.get("properties", {}).items():
        if key not in instance:
            continue
        if set(sub) - {"const", "enum"}:
            raise NotImplementedError(f"schema: 'if' on {key} with {sorted(sub)}")
        if "const" in sub and instance[key] != sub["const"]:
            return False
        if "enum" in sub and instance[key] not in sub["enum"]:
            return False
    return True


def _fill(node: dict[str, Any], instance: Any) -> Any:
    """Set the defaults of ``node`` in ``instance`` (in place), as Snakemake's validate does:
    a missing property with a default gets a copy of it, then every present object is filled;
    ``allOf`` parts whose ``if`` holds add their ``then`` (kind-specific defaults)."""
    node = _resolve(node)
    if not isinstance(instance, dict):
        return instance
    props = node.get("properties", {})
    for key, sub in props.items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
    for key, sub in props.items():
        if key in instance:
            instance[key] = _fill(sub, instance[key])
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        for key in instance.keys() - props.keys():
            instance[key] = _fill(extra, instance[key])
    for part in node.get("allOf", ()):
        if "if" not in part:
            _fill(part, instance)
        elif _matches(part["if"], instance):
            _fill(part.get("then", {}), instance)
        elif "else" in part:
            _fill(part["else"], instance)
    return instance


def fill(name: str, value: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of the section ``value`` with the schema's defaults filled in (recursively,
    ``source``'s kind-specific ones included). ``value`` is not validated: Snakemake does that;
    keys the schema does not know are kept as they are."""
    return _fill(section(name), copy.deepcopy(dict(value or {})))


def defaults(name: str, **given: Any) -> dict[str, Any]:
    """The defaults of section ``name``: :func:`fill` of an empty section, or of ``given``
    (e.g. ``defaults("source", kind="nuswide")`` for a kind's defaults).

    Example:
        >>> defaults("lagnh")["hidden"], defaults("split")["empty_images"]
        (1024, 'drop')
    """
    return fill(name, given)


def dataset_default(key: str) -> Any:
    """The default of a dataset-level key that is not a section (``seed``, ``device``, ``bits``).

    Example:
        >>> dataset_default("device")
        'auto'
    """
    return copy.deepcopy(_resolve(_load()["$defs"]["dataset"])["properties"][key]["default"])
