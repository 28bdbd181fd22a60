"""The native (C) kernels of pipeline.lagnh.native against the torch path they replace."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
import torch

from pipeline.lagnh import native
from pipeline.lagnh.graph import (
    aux_similarity,
    normalized_gaussian_graph,
    sigma_from_squared_distances,
    squared_distances,
)
from pipeline.lagnh.losses import cosine_reconstruction_loss

needs_c = pytest.mark.skipif(native.library() is None,
                             reason="no C compiler: the torch path is used")


@pytest.fixture
def mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Call ``mode(True/False)`` to switch the kernels on/off (restored after the test)."""

    def switch(on: bool) -> None:
        monkeypatch.setenv(native.ENV_SWITCH, "1" if on else "0")

    yield switch
    native.reset()


def _graph(x: torch.Tensor, s_a: torch.Tensor | None, sigma: float | None, adjacency: str,
           weight: torch.Tensor) -> list[torch.Tensor]:
    xr = x.clone().requires_grad_(True)
    s_norm, s_v, s, sig = normalized_gaussian_graph(xr, s_a, 0.7, sigma, adjacency)
    (s_norm * weight).sum().backward()
    return [s_norm.detach(), s_v, s, sig.reshape(()), xr.grad]


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float) -> bool:
    scale = b.abs().max().clamp_min(1e-30)
    return bool((a - b).abs().max() <= rtol * scale)


@needs_c
@pytest.mark.parametrize("n", [1, 2, 5, 63, 64, 65, 130, 300])
@pytest.mark.parametrize("adjacency", ["sym", "row"])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("sigma", [None, 3.0])
def test_graph_matches_torch_path(mode, n: int, adjacency: str, fused: bool,
                                  sigma: float | None) -> None:
    """Eq. (3)-(5), normalisation and backward: C (tiles of 64, edges included) = torch."""
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, 16, generator=g)
    x[n // 2] = x[0]  # a duplicate node: sq = 0 off the diagonal
    s_a = aux_similarity((torch.rand(n, 6, generator=g) < 0.3).float()) if fused else None
    weight = torch.randn(n, n, generator=g)
    mode(True)
    fast = _graph(x, s_a, sigma, adjacency, weight)
    mode(False)
    ref = _graph(x, s_a, sigma, adjacency, weight)
    for a, b in zip(fast, ref, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert _close(a, b, 1e-4)
    assert torch.equal(torch.diagonal(fast[1]), torch.ones(n))  # S^v_ii = 1 exactly
    if not fused:
        assert fast[2].data_ptr() == fast[1].data_ptr()  # S is S^v


@needs_c
def test_kernel_floor_and_isolated_nodes(mode) -> None:
    """Far-apart nodes: S^v is exactly 0 (no subnormals), S~ has no NaN, gradients finite."""
    x = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    mode(True)
    s_norm, s_v, _, _ = normalized_gaussian_graph(x, None, 1.0, 1.0, "sym")
    assert torch.equal(s_v, torch.eye(3))
    assert torch.equal(s_norm, torch.eye(3))
    xr = x.clone().requires_grad_(True)
    normalized_gaussian_graph(xr, torch.zeros(3, 3), 1.0, 1.0, "row")[0].sum().backward()
    assert torch.isfinite(xr.grad).all()


@needs_c
def test_sigma_rule_matches_torch_path(mode) -> None:
    g = torch.Generator().manual_seed(3)
    for n, d in ((3, 1), (40, 8), (500, 64)):
        sq = squared_distances(torch.randn(n, d, generator=g))
        mode(True)
        fast = sigma_from_squared_distances(sq)
        mode(False)
        ref = sigma_from_squared_distances(sq)
        assert fast.shape == ref.shape == () and fast.dtype == ref.dtype
        assert float(fast) == pytest.approx(float(ref), rel=1e-5)
    mode(True)
    assert float(sigma_from_squared_distances(torch.zeros(5, 5))) == 1.0  # no positive distance


@needs_c
def test_cosine_reconstruction_matches_torch_path(mode) -> None:
    g = torch.Generator().manual_seed(4)
    z = torch.randn(200, 12, generator=g)
    z[7] = 0.0
    target = aux_similarity((torch.rand(200, 5, generator=g) < 0.4).float())
    out = {}
    for on in (True, False):
        mode(on)
        zr = z.clone().requires_grad_(True)
        loss = cosine_reconstruction_loss(zr, target, 0.8)
        loss.backward()
        out[on] = (loss.detach(), zr.grad)
    ref = cosine_reconstruction_loss(z.double(), target.double(), 0.8, fused=False)
    assert out[True][0].dtype == torch.float32 and out[True][0].shape == ()
    assert float(out[True][0]) == pytest.approx(float(ref), rel=1e-6)  # double accumulation
    assert float(out[False][0]) == pytest.approx(float(ref), rel=1e-4)
    assert _close(out[True][1], out[False][1], 1e-5)


@needs_c
def test_deterministic_for_a_thread_count(mode) -> None:
    """Two runs with the same threads give the same bits; 1 and 2 threads agree closely."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(257, 32, generator=g)
    s_a = aux_similarity((torch.rand(257, 6, generator=g) < 0.3).float())
    weight = torch.randn(257, 257, generator=g)
    mode(True)
    threads = torch.get_num_threads()
    try:
        runs = {}
        for t in (1, 2, 2):
            torch.set_num_threads(t)
            runs.setdefault(t, []).append(_graph(x, s_a, None, "sym", weight))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*runs[2], strict=True):
        assert torch.equal(a, b)
    for a, b in zip(runs[1][0], runs[2][0], strict=True):
        assert _close(a, b, 1e-5)


@needs_c
def test_used_only_for_cpu_float32(mode) -> None:
    mode(True)
    x32 = torch.zeros(3, 2)
    assert native.usable(x32, None)
    assert not native.usable(x32.double())
    mode(False)
    assert native.library() is None and not native.usable(x32)


@needs_c
def test_build_cache_and_missing_compiler(mode, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path) -> None:
    monkeypatch.setenv("LAGNH_KERNEL_CACHE", str(tmp_path / "cache"))
    lib = native.build()
    assert lib.parent == tmp_path / "cache" and lib.name.startswith("lagnh_kernels-")
    mtime = lib.stat().st_mtime_ns
    assert native.build() == lib and lib.stat().st_mtime_ns == mtime  # cached, not rebuilt
    assert [p.name for p in lib.parent.iterdir()] == [lib.name]  # no temp file left behind

    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(RuntimeError, match="no C compiler found"):
        native.build()
    native.reset()
    mode(True)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert native.library() is None
    assert any("using the torch path" in str(w.message) for w in seen)
    x = torch.randn(5, 3, requires_grad=True)  # the torch path still runs
    normalized_gaussian_graph(x)[0].sum().backward()
    assert torch.isfinite(x.grad).all()


def test_compile_error_names_the_command(mode, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    cc = tmp_path / "cc"
    cc.write_text("#!/bin/sh\n[ \"$1\" = --version ] && { echo fake-cc 1.0; exit 0; }\n"
                  "echo 'kernels.c:1: error: broken' >&2; exit 1\n")
    cc.chmod(0o755)
    monkeypatch.setenv("CC", str(cc))
    monkeypatch.setenv("LAGNH_KERNEL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match=r"(?s)building the LAGNH kernels failed: .*cc.*"
                                           r"error: broken.*LAGNH_NATIVE=0"):
        native.build()
    assert list((tmp_path / "cache").iterdir()) == []  # the temp file is removed


@needs_c
def test_fit_records_the_kernels_and_follows_the_torch_path(mode) -> None:
    """A short seeded training with the C kernels tracks the torch path's losses closely and
    says which kernels it used; twice with the C kernels is bit-identical."""
    from pipeline.lagnh import method

    g = torch.Generator().manual_seed(6)
    x = torch.relu(torch.randn(120, 24, generator=g)).numpy()
    y = (torch.rand(120, 5, generator=g) < 0.3).float().numpy()
    params = {"epochs": 3, "batch_size": 64, "d_att": 16, "hidden": 32, "device": "cpu"}
    states = {}
    for on in (True, False, True):
        mode(on)
        states.setdefault(on, []).append(method.fit(x, y, 8, params, seed=1))
    assert states[True][0]["kernels"] == "C" and states[False][0]["kernels"] == "torch"
    a, b = states[True]
    assert all(torch.equal(a["generator"][k], b["generator"][k]) for k in a["generator"])
    for row_c, row_t in zip(states[True][0]["history"], states[False][0]["history"],
                            strict=True):
        for key in ("loss_total", "loss_recons", "loss_quan", "loss_cl"):
            assert row_c[key] == pytest.approx(row_t[key], rel=1e-3)


def test_compile_flags_per_architecture() -> None:
    """The x86-only vector-width flag is not passed to compilers for other CPUs."""
    assert "-mprefer-vector-width=512" in native.compile_flags("x86_64")
    arm = native.compile_flags("aarch64")
    assert "-mprefer-vector-width=512" not in arm and "-march=native" in arm
    assert "-ffp-contract=off" in arm and "-fopenmp" in arm


def _vectorization_report() -> tuple[str, str]:
    """kernels.c and GCC's vectorisation report for it, built with the project's flags."""
    import platform
    import subprocess
    import tempfile

    cc = native._compiler()
    if cc is None:
        pytest.skip("no C compiler")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    if "Free Software Foundation" not in version:
        pytest.skip(f"the report is GCC's (-fopt-info-vec); {cc} is not GCC")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [cc, *native.compile_flags(platform.machine()), "-fopt-info-vec-optimized",
               "-o", f"{tmp}/k.so", str(native.SOURCE), "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return native.SOURCE.read_text(), proc.stderr


def test_marked_loops_are_vectorized() -> None:
    """The exp and residual loops run as SIMD code with the project's flags on this CPU (without
    -fno-trapping-math GCC left them scalar on AVX2, about 4x slower)."""
    source, report = _vectorization_report()
    marked = [i for i, line in enumerate(source.splitlines(), 1) if "/* vectorized:" in line]
    assert len(marked) == 3
    done = [r for r in report.splitlines() if "loop vectorized" in r]
    for line in marked:  # GCC names the loop's line or its body's first line
        assert any(f"kernels.c:{at}:" in r for r in done for at in (line, line + 1)), \
            f"the loop at kernels.c:{line} is not vectorised:\n{report}"


@needs_c
def test_sigma_rule_does_not_depend_on_threads() -> None:
    sq = squared_distances(torch.randn(300, 32, generator=torch.Generator().manual_seed(5)))
    before = torch.get_num_threads()
    try:
        got = set()
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            got.add(native.sigma_rule(sq[:64].clamp_min(0.0), 7.0, 4, 8))
    finally:
        torch.set_num_threads(before)
    assert len(got) == 1
