"""Registry of hashing methods: every method is a module with ``fit`` and ``encode``.

Contract (the train and encode stages rely on nothing else):

``fit(X, Y, bits, params, seed) -> dict``
    ``X`` float32 (n, d) training features, ``Y`` uint8 (n, c) auxiliary labels (methods that do
    not use them ignore them), ``params`` the method's config section (a dict, may be empty).
    Returns the model *state*: a dict of numpy arrays / torch tensors / plain Python values that
    ``torch.save`` can store. An optional key ``"history"`` (list of dicts, one per step/epoch)
    is written by the train stage as a CSV.
``encode(state, X, Y, params) -> np.ndarray``
    bool array (N, bits), True meaning +1 (b = sgn(z), ties to -1 as in Eq. 13); a state with
    ``"code_bits"`` declares another width (the ``aux`` row's code is one bit per class).

Optional, read with :func:`uses_aux` / :func:`uses_train_labels`:

``uses_aux(params) -> bool``
    whether the method reads the auxiliary labels (the report's caption names those rows);
    absent means no.
``USES_TRAIN_LABELS = True``
    ``fit`` takes ``labels=`` (the training images' ground truth), used only to choose settings
    on a validation split of the training images (:mod:`pipeline.validation`).
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
    "aux": "pipeline.baselines.aux",
    "aux_itq": "pipeline.baselines.aux_itq",
}

#: method -> parameters it reads only when encoding: a row that differs from another row of the
#: same method only in these encodes with the other's trained model (no second training)
ENCODE_ONLY: dict[str, tuple[str, ...]] = {
    "lagnh": ("encode_mode", "encode_batch_size", "encode_neighbors", "encode_scale"),
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


def uses_aux(module: ModuleType, params: dict | None) -> bool:
    """Whether the method of ``module`` with ``params`` reads the auxiliary labels."""
    fn = getattr(module, "uses_aux", None)
    return bool(fn(params or {})) if callable(fn) else False


def uses_train_labels(module: ModuleType) -> bool:
    """Whether ``module.fit`` takes the training images' ground-truth ``labels=``."""
    return bool(getattr(module, "USES_TRAIN_LABELS", False))


def training_params(name: str, params: dict) -> dict:
    """``params`` without the keys method ``name`` reads only when encoding.

    Example:
        >>> training_params("lagnh", {"lr": 0.001, "encode_mode": "batch"})
        {'lr': 0.001}
    """
    drop = ENCODE_ONLY.get(name, ())
    return {k: v for k, v in params.items() if k not in drop}
