"""Device and thread selection shared by the stages: CUDA when present, CPU otherwise."""

from __future__ import annotations

import os

import torch


def pick_device(name: str = "auto") -> str:
    """``auto`` → ``cuda`` when available else ``cpu``; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("config asks for device 'cuda' but no CUDA device is visible; "
                           "set device: auto or cpu")
    return name


def set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads for torch, at most the machine's cores (0: torch's default)."""
    if threads and threads > 0:
        threads = min(threads, os.cpu_count() or threads)
        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
