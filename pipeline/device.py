"""Device and thread selection shared by the stages: CUDA when present, CPU otherwise.

torch is imported only when a function needs it: its import alone is about 0.6 GiB of resident
memory, which a stage that runs a numpy method need not pay while it holds its data.
"""

from __future__ import annotations

import os


def pick_device(name: str = "auto") -> str:
    """``auto`` → ``cuda`` when available else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("config asks for device 'cuda' but no CUDA device is visible; "
                           "set device: auto or cpu")
    return name


def set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads for torch, at most the machine's cores (0: torch's default)."""
    if threads and threads > 0:
        import torch

        threads = min(threads, os.cpu_count() or threads)
        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
