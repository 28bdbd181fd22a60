"""The docstring examples of every ``pipeline`` module run as tests.

Equivalent to ``pytest --doctest-modules pipeline`` but collected from ``tests/`` (the README's
``pytest -n 2 --dist loadfile tests``); one test per module that has examples.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import pipeline

#: Modules not imported for their examples (``__main__`` is a command-line entry point).
SKIP = {"pipeline.__main__"}


def _modules_with_examples() -> list[str]:
    finder = doctest.DocTestFinder()
    names = []
    for info in pkgutil.walk_packages(pipeline.__path__, "pipeline."):
        if info.name in SKIP:
            continue
        module = importlib.import_module(info.name)
        if any(t.examples for t in finder.find(module)):
            names.append(info.name)
    return sorted(names)


MODULES = _modules_with_examples()


def test_examples_are_found() -> None:
    # a guard against collecting nothing (e.g. a broken walk): these modules have examples
    for name in ("pipeline.codes", "pipeline.retrieval.metrics", "pipeline.lagnh.losses",
                 "pipeline.lagnh.encoding", "pipeline.lagnh.gcn"):
        assert name in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=True, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (above)"
