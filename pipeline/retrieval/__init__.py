"""Retrieval evaluation: exact Hamming ranking, MAP@K, topK-precision, PR curves, galleries.

See :mod:`pipeline.retrieval.hamming` for the ranking (and its tie rule) and
:mod:`pipeline.retrieval.metrics` for the metric definitions and the zero-hit convention.
"""

from pipeline.retrieval.hamming import hamming_distance, hamming_topk
from pipeline.retrieval.metrics import (
    MAPResult,
    PRCurve,
    PrecisionAtK,
    RetrievalResult,
    average_precision_at_k,
    evaluate_retrieval,
    evaluate_retrieval_float,
    mean_average_precision,
    mean_average_precision_float,
    precision_at_k_curve,
    precision_recall_hamming_radius,
)

__all__ = [
    "MAPResult",
    "PRCurve",
    "PrecisionAtK",
    "RetrievalResult",
    "average_precision_at_k",
    "evaluate_retrieval",
    "evaluate_retrieval_float",
    "hamming_distance",
    "hamming_topk",
    "mean_average_precision",
    "mean_average_precision_float",
    "precision_at_k_curve",
    "precision_recall_hamming_radius",
]
