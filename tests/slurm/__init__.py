"""A local SLURM cluster for the slurm-marked tests (see cluster.py)."""
