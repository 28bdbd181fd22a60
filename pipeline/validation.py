"""Validation splits carved from the training images, and their Hamming MAP.

Settings (the repetition count of ``aux_itq``, LAGNH's options in ``scripts/sweep_lagnh.py``)
are chosen on training images only: a seeded draw splits the training rows into a validation
*query* part, a validation *database* part and the *rest* that the candidate models are fitted
on. The query and retrieval images of the experiment are never read.

Relevance on the validation split is the ground truth of those training images (shares at
least one label), as in the paper's cross-validation (Section 4.2): the auxiliary labels cannot
serve, since a method built from them would be judged by themselves.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pipeline.codes import pack_codes
from pipeline.retrieval.metrics import mean_average_precision


class ValidationSplit(NamedTuple):
    """Row indices into the training rows: validation queries, validation database, the rest."""

    query: np.ndarray
    database: np.ndarray
    rest: np.ndarray


def validation_split(n: int, query_fraction: float, database_fraction: float,
                     seed: int) -> ValidationSplit:
    """Seeded partition of ``n`` training rows into query / database / rest (sorted indices).

    Each part gets at least one row; ``query_fraction + database_fraction`` must be < 1.

    Example:
        >>> s = validation_split(10, 0.2, 0.4, seed=0)
        >>> len(s.query), len(s.database), len(s.rest)
        (2, 4, 4)
        >>> sorted(np.concatenate(s).tolist()) == list(range(10))
        True
    """
    if not (0 < query_fraction < 1 and 0 < database_fraction < 1
            and query_fraction + database_fraction < 1):
        raise ValueError("validation: query_fraction and database_fraction must be in (0, 1) "
                         f"with a sum < 1, got {query_fraction} and {database_fraction}")
    if n < 3:
        raise ValueError(f"validation: need at least 3 training images to carve a validation "
                         f"split, got {n}")
    n_q = min(max(1, round(n * query_fraction)), n - 2)
    n_db = min(max(1, round(n * database_fraction)), n - n_q - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return ValidationSplit(np.sort(perm[:n_q]), np.sort(perm[n_q:n_q + n_db]),
                           np.sort(perm[n_q + n_db:]))


def validation_map(q_codes: np.ndarray, db_codes: np.ndarray, q_labels: np.ndarray,
                   db_labels: np.ndarray, topk: int | None = 1000) -> float:
    """MAP@``topk`` (capped at the database size) of bool codes, the evaluation's convention
    (stable ties, queries without a relevant item dropped)."""
    bits = q_codes.shape[1]
    k = None if topk is None or topk >= len(db_codes) else int(topk)
    res = mean_average_precision(pack_codes(q_codes), pack_codes(db_codes),
                                 q_labels.astype(np.uint8), db_labels.astype(np.uint8),
                                 topk=k, bits=bits, device="numpy")
    return float(res.map)
