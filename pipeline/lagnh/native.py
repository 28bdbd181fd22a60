r"""Native (C) kernels for the elementwise passes of a LAGNH training step over the (n, n) graphs.

The matrix products of Eq. (3)–(9) run in torch; what is left between them on the (n, n)
matrices (the squared distances, kernel, fusion, degrees and normalisation of Eq. 3–5, their
backward, the residual of Eq. 9) is memory traffic, one pass per eager torch op. ``kernels.c``
fuses each chain into one or two passes (see its header); on a 2-core Xeon (one thread) a
COCO-shaped training step went from 146 to 139 ms (medians, benchmarks/README.md). The values
are those of the torch path up to float rounding (exp and summation order; the tests compare
both).

Build: on first use ``kernels.c`` is compiled with the system C compiler (``$CC``, else ``cc``),
``-O3 -march=native -ffp-contract=off -fno-trapping-math -fopenmp`` (plus
``-mprefer-vector-width=512`` on x86-64), into ``$LAGNH_KERNEL_CACHE`` (default
``$XDG_CACHE_HOME/lagnh-pipeline``, i.e. ``~/.cache/lagnh-pipeline``) as
``lagnh_kernels-<hash>.so``; the hash covers the source, the flags, the compiler's version and
the CPU's model and flags, so a cluster node never loads code built for another CPU. The library
is written to a temporary file and renamed (parallel jobs may build it at once). OpenMP comes
from the runtime torch has already loaded (same soname), with torch's thread count.

Fallback: without a working compiler (a warning says why), on CUDA, for float64 (gradcheck) or
with ``LAGNH_NATIVE=0``, :func:`library` returns ``None`` and the callers run the torch path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("kernels.c")
#: -fno-trapping-math lets GCC vectorise the loops with selects on AVX2 (see kernels.c's header).
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-trapping-math", "-fopenmp",
         "-shared", "-fPIC")
#: x86-64 only: 512-bit vectors where the CPU has them (the exp loops run ~20% faster here).
X86_FLAGS = ("-mprefer-vector-width=512",)


def compile_flags(machine: str | None = None) -> tuple[str, ...]:
    """Compiler flags for this (or the named) machine architecture."""
    machine = (machine or platform.machine()).lower()
    return FLAGS + (X86_FLAGS if machine in ("x86_64", "amd64") else ())


#: ``LAGNH_NATIVE=0`` (or ``false``/``no``/``off``) forces the torch path.
ENV_SWITCH = "LAGNH_NATIVE"

_F = ctypes.c_float
_I = ctypes.c_int
_P = ctypes.c_void_p
_SIGNATURES = {
    "graph_forward": (None, [_I, _P, _P, _P, _F, _F, _F, _P, _P, _P, _I, _I]),
    "graph_backward": (None, [_I, _P, _P, _P, _P, _P, _P, _P, _I, _I]),
    "cos_recon": (ctypes.c_double, [_I, _P, _P, _F, _I]),
    "sigma_rule": (_F, [_I, _I, _P, _F, _I, _I, _I]),
}

_state: dict[str, object] = {}


def enabled() -> bool:
    """Whether ``LAGNH_NATIVE`` allows the native kernels (default: yes)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    """Where built libraries are kept (see the module docstring)."""
    if os.environ.get("LAGNH_KERNEL_CACHE"):
        return Path(os.environ["LAGNH_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lagnh-pipeline"


def _cpu_id() -> str:
    """The CPU's model name and feature flags (what ``-march=native`` compiles for)."""
    keep = ("model name", "flags", "Features", "CPU implementer", "CPU part")
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    seen: dict[str, str] = {}
    for line in lines:
        key, _, value = line.partition(":")
        key = key.strip()
        if key in keep and key not in seen:
            seen[key] = value.strip()
    return "|".join(f"{k}={v}" for k, v in sorted(seen.items())) or platform.machine()


def _compiler() -> str | None:
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc)


def build() -> Path:
    """Compile ``kernels.c`` into the cache (once per source, compiler and CPU) and return the
    library's path. Raises ``RuntimeError`` naming the compiler command and its output."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError(f"no C compiler found ({os.environ.get('CC') or 'cc'} is not on PATH);"
                           " install gcc or set CC, or set LAGNH_NATIVE=0")
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True,
                                 timeout=60).stdout.splitlines()[:1]
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"C compiler {cc} does not run: {exc}") from exc
    src = SOURCE.read_bytes()
    parts = [src, " ".join(compile_flags()).encode(), "".join(version).encode(),
             _cpu_id().encode()]
    key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
    out_dir = cache_dir()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        out_dir = Path(tempfile.gettempdir()) / f"lagnh-pipeline-{os.getuid()}"
        out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / f"lagnh_kernels-{key}.so"
    if lib.exists():
        return lib
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=lib.name + ".", suffix=".tmp")
    os.close(fd)
    cmd = [cc, *compile_flags(), "-o", tmp, str(SOURCE), "-lm"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"building the LAGNH kernels failed: {' '.join(cmd)}\n"
                               f"{proc.stderr.strip()}\n(set LAGNH_NATIVE=0 to skip them)")
        os.replace(tmp, lib)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded kernels, building them on first use; ``None`` when disabled or unbuildable
    (one warning with the reason; the torch path is used instead)."""
    if not enabled():
        return None
    if "lib" not in _state:
        try:
            lib = ctypes.CDLL(str(build()))
            for name, (res, args) in _SIGNATURES.items():
                fn = getattr(lib, name)
                fn.restype, fn.argtypes = res, args
            _state["lib"] = lib
        except (RuntimeError, OSError) as exc:
            warnings.warn(f"LAGNH native kernels unavailable, using the torch path: {exc}",
                          RuntimeWarning, stacklevel=2)
            _state["lib"] = None
    return _state["lib"]  # type: ignore[return-value]


def reset() -> None:
    """Forget the loaded library (the next :func:`library` call decides again)."""
    _state.clear()


def usable(*tensors: Tensor | None) -> bool:
    """True when the kernels are available and every given tensor is a CPU float32 tensor."""
    ok = all(t is None or (t.device.type == "cpu" and t.dtype == torch.float32)
             for t in tensors)
    return ok and library() is not None


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def graph_forward(gram: Tensor, norms: Tensor, s_a: Tensor | None, mu: float, scale: float,
                  floor: float, adjacency: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""Eq. (3)–(5) and the normalisation from the Gram matrix :math:`XX^\top` (overwritten with
    :math:`S^v`). Returns ``(s_norm, s_v, s, inv)`` with ``s is s_v`` when ``s_a`` is None and
    ``inv`` = :math:`D^{-1/2}` (``"sym"``) or :math:`D^{-1}` (``"row"``)."""
    lib = library()
    assert lib is not None
    n = gram.shape[0]
    gram = gram.contiguous()
    norms = norms.contiguous()
    s_a = None if s_a is None else s_a.contiguous()
    s = torch.empty_like(gram) if s_a is not None else gram
    s_norm = torch.empty_like(gram)
    inv = torch.empty(n, dtype=gram.dtype)
    lib.graph_forward(n, _ptr(gram), _ptr(norms), _ptr(s_a), mu, scale, floor, _ptr(s),
                      _ptr(s_norm), _ptr(inv), int(adjacency == "row"), torch.get_num_threads())
    return s_norm, gram, s, inv


def graph_backward(g: Tensor, inv: Tensor, s: Tensor, s_v: Tensor,
                   adjacency: str) -> tuple[Tensor, Tensor]:
    r""":math:`Q = D + D^\top` (see :class:`pipeline.lagnh.graph._FusedGaussianGraph`, up to the
    factor :math:`dS/dsq`) and its row sums, from :math:`\partial L/\partial\tilde{S}`."""
    lib = library()
    assert lib is not None
    n = g.shape[0]
    threads = torch.get_num_threads()
    g = g.contiguous()
    q = torch.empty_like(g)
    qsum = torch.empty(n, dtype=g.dtype)
    work = torch.empty(threads * n, dtype=g.dtype)
    lib.graph_backward(n, _ptr(g), _ptr(inv), _ptr(s), _ptr(s_v), _ptr(q), _ptr(qsum),
                       _ptr(work), int(adjacency == "row"), threads)
    return q, qsum


def cos_recon(r: Tensor, target: Tensor, k: float) -> float:
    r"""Eq. (9) residual in place: ``r`` (:math:`\hat Z\hat Z^\top`, contiguous) becomes
    :math:`([r]_+ - kT)\odot[r > 0]`; returns :math:`\sum ([r]_+ - kT)^2`."""
    lib = library()
    assert lib is not None and r.is_contiguous()
    target = target.contiguous()
    return float(lib.cos_recon(r.shape[0], _ptr(r), _ptr(target), k, torch.get_num_threads()))


def sigma_rule(sq_rows: Tensor, target: float, stages: int, grid: int) -> float:
    """The bandwidth search of :func:`pipeline.lagnh.graph.sigma_from_squared_distances` on
    ``sq_rows`` (r, n), clamped at 0, in one call."""
    lib = library()
    assert lib is not None and 2 <= grid <= 64
    sq_rows = sq_rows.contiguous()
    return float(lib.sigma_rule(sq_rows.shape[0], sq_rows.shape[1], _ptr(sq_rows), target,
                                stages, grid, torch.get_num_threads()))
