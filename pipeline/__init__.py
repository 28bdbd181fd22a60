"""lagnh-pipeline: a staged, cached Snakemake pipeline for LAGNH image hashing.

Paper: Chen et al., "Two-pronged Strategy: Lightweight Augmented Graph Network Hashing for
Scalable Image Retrieval", ACM MM 2021.
"""

import os

# Stages run side by side under Snakemake (e.g. --cores 4 on a 2-core machine). Busy-waiting
# OpenMP threads then steal each other's cores and slow torch several-fold; passive waiting
# degrades far less. Set before any stage imports torch; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["__version__"]
__version__ = "0.1.0"
