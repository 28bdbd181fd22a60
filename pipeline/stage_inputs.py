"""Loading the aligned inputs of the train and encode stages (split, features, aux labels)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.artifacts import check_aligned, read_h5


@dataclass
class StageInputs:
    ids: np.ndarray
    split: np.ndarray
    features: np.ndarray
    valid: np.ndarray
    aux: np.ndarray
    feature_attrs: dict
    protocol: str


def load_inputs(split_path: str, features_path: str, aux_path: str) -> StageInputs:
    """Read split, features and aux labels and check that their rows are the same images."""
    s, sattrs = read_h5(split_path, ["ids", "split"], stage="split")
    f, fattrs = read_h5(features_path, ["ids", "features", "valid"], stage="features")
    x, _ = read_h5(aux_path, ["ids", "aux_labels"], stage="auxiliary")
    check_aligned(s["ids"], f["ids"], split_path, features_path)
    check_aligned(s["ids"], x["ids"], split_path, aux_path)
    feats = f["features"]
    if feats.ndim != 2 or not np.isfinite(feats[f["valid"] == 1]).all():
        raise ValueError(f"{features_path}: features must be a finite 2-D array, got shape "
                         f"{feats.shape}; rebuild it")
    return StageInputs(s["ids"], s["split"], feats, f["valid"].astype(bool), x["aux_labels"],
                       fattrs, str(sattrs.get("protocol")))
