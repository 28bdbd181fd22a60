"""lagnh-pipeline: a staged, cached Snakemake pipeline for LAGNH image hashing.

Paper: Chen et al., "Two-pronged Strategy: Lightweight Augmented Graph Network Hashing for
Scalable Image Retrieval", ACM MM 2021.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
