"""Registry of hashing methods: every method is a module with ``fit`` and ``encode``.

Contract (the train and encode stages rely on nothing else):

``fit(X, Y, bits, params, seed) -> dict``
    ``X`` float32 (n, d) training features, ``Y`` uint8 (n, c) auxiliary labels (methods that do
    not use them ignore them), ``params`` the method's config section (a dict, may be empty).
    Returns the model *state*: a dict of numpy arrays / torch tensors / plain Python values that
    ``torch.save`` can store. An optional key ``"history"`` (list of dicts, one per step/epoch)
    is written by the train stage as a CSV.
``encode(state, X, Y, params) -> np.ndarray``
    bool array (N, bits), True meaning +1 (b = sgn(z), ties to -1 as in Eq. 13).

A module also declares the parameters it accepts, so that :func:`check_params` refuses a bad
``methods:`` row when the workflow starts rather than in ``train`` after the earlier stages ran:
either ``check_params(params) -> None`` (raises ``ValueError`` naming the key and the valid
keys; may check values too) or ``PARAMS``, the collection of accepted keys. A module that
declares neither has its parameters checked only by ``fit``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from types import ModuleType
from typing import Any

log = logging.getLogger("pipeline.methods")

#: method name -> module implementing fit/encode
METHODS: dict[str, str] = {
    "lsh": "pipeline.baselines.lsh",
    "sklsh": "pipeline.baselines.sklsh",
    "sh": "pipeline.baselines.sh",
    "pcah": "pipeline.baselines.pcah",
    "itq": "pipeline.baselines.itq",
    "sgh": "pipeline.baselines.sgh",
    "random": "pipeline.baselines.random",
    "lagnh": "pipeline.lagnh.method",
}


def get_method(name: str) -> ModuleType:
    """Import the module of method ``name``; a clear error lists the known methods."""
    if name not in METHODS:
        raise ValueError(f"unknown hashing method '{name}'; known methods: {sorted(METHODS)}")
    module = importlib.import_module(METHODS[name])
    for attr in ("fit", "encode"):
        if not callable(getattr(module, attr, None)):
            raise TypeError(f"{METHODS[name]} must define {attr}()")
    return module


def check_params(name: str, params: Mapping[str, Any], where: str = "params") -> None:
    """Refuse an unknown implementation ``name`` or a parameter that method does not accept.

    Args:
        name: the implementation (a key of :data:`METHODS`).
        params: the parameters ``fit`` will get (for LAGNH: the dataset's lagnh section with the
            row's overrides).
        where: prefix of the error, e.g. ``"config: demo.methods.lsh_x"``.

    Raises:
        ValueError: naming ``where``, the key and the valid keys (or implementations).

    A method module whose import fails (the driving Snakemake may run without torch) is skipped
    with a warning; ``fit`` still checks its parameters.
    """
    if name not in METHODS:
        raise ValueError(f"{where}: unknown method implementation '{name}'; valid: "
                         f"{', '.join(sorted(METHODS))} (name one with the row's 'method' key)")
    try:
        module = importlib.import_module(METHODS[name])
    except ImportError as e:
        log.warning("%s: parameters not checked before the run (%s cannot be imported: %s)",
                    where, METHODS[name], e)
        return
    check = getattr(module, "check_params", None)
    if callable(check):
        try:
            check(dict(params))
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        return
    accepted = getattr(module, "PARAMS", None)
    if accepted is None:
        return
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"{where}: unknown parameter(s) {unknown} for method '{name}'; valid "
                         f"keys: {', '.join(sorted(accepted)) or '(none)'}")
