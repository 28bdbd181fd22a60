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
"""

from __future__ import annotations

import importlib
from types import ModuleType

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
