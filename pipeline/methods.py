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
``encode_group(state, params) -> int``
    rows whose codes depend on each other (LAGNH's batch-wise encoding: its batch size); the
    encode stage passes ``encode`` blocks of a multiple of it, in file order. Absent means 1:
    every row's code depends on that row only.
``USES_TRAIN_LABELS = True``
    ``fit`` takes ``labels=`` (the training images' ground truth), used only to choose settings
    on a validation split of the training images (:mod:`pipeline.validation`).

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
    "aux": "pipeline.baselines.aux",
    "aux_itq": "pipeline.baselines.aux_itq",
    # the paper's unsupervised deep baselines (Table 3), trained on the features
    "uhbdnn": "pipeline.deep.uhbdnn",
    "ssdh": "pipeline.deep.ssdh",
    "tbh": "pipeline.deep.tbh",
    # feature-level variants (DeepBit and SADH train on the images; here on the features)
    "deepbit_feat": "pipeline.deep.deepbit_feat",
    "sadh_feat": "pipeline.deep.sadh_feat",
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


def encode_group(module: ModuleType, state: dict, params: dict | None) -> int:
    """Rows whose codes depend on each other (1 unless the module says otherwise)."""
    fn = getattr(module, "encode_group", None)
    return max(1, int(fn(state, params or {}))) if callable(fn) else 1


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
