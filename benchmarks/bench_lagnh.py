"""Benchmark: LAGNH training and encoding speed at the paper's MS COCO scale (Table 4).

``.venv/bin/python benchmarks/bench_lagnh.py [--epochs 300] [--threads N] [--jobs J]
[--device auto] [--n-encode 118287] [--out benchmarks/results/bench_lagnh.md]``

Synthetic data with the paper's COCO shapes: 5,000 training images, 4,096-d features (VGG16
fc7), 80 auxiliary classes (about 2.9 per image), 32 bits, batch 1,024 (5 steps per epoch),
paper variant (d' = 512, hidden 1,024). In the same run it measures:

* **training**: :func:`pipeline.lagnh.method.fit` for ``--epochs`` epochs; ms/step is the mean
  over the epochs after the first (warm-up) of ``epoch seconds / steps``; the 300-epoch time is
  extrapolated from it (``ms/step x 5 x 300``) when fewer epochs are run;
* **FLOPs of a step** counted from the layer shapes (:func:`step_flops`, every matmul of the
  forward and backward passes of one discriminator + one generator step as implemented), checked
  against ``torch.utils.flop_counter.FlopCounterMode`` on one real step; the achieved rate is an
  epoch's FLOPs (:func:`epoch_flops`: 4 batches of 1,024 and one of 904) over an epoch's time;
* **dense fp32 matmul rate** of the same machine (2048 x 2048 x 2048 ``torch.mm``, median of 5
  after warm-up, on ``jobs x threads`` threads), before and after training; "% of matmul rate"
  uses their mean;
* the **matmul-only floor**: the matmuls of one real step (captured with their shapes and
  strides) replayed back to back, no other work; its share of the matmul rate is the most this
  implementation could reach with zero overhead outside the matmuls;
* ``--jobs J`` trains J models at once in J processes of ``--threads`` threads each (how the
  pipeline trains several code lengths side by side); the achieved rate is then the sum over the
  jobs, against the matmul rate on ``J x threads`` threads;
* **encoding** of ``--n-encode`` images (118,287 = COCO train2017) from features held in memory,
  inductive mode (K = 64 neighbours among the 5,000 training images) and batch mode.

Machines are shared: ``os.getloadavg()``, the torch thread count and ``OMP_WAIT_POLICY`` are
recorded. libgomp reads the policy once, when torch loads it: the caller's value, or unset
(libgomp's default: spin a while, then sleep). The pipeline's stages default to ``PASSIVE``,
which survives oversubscription but costs a 2-thread job ~20% (see benchmarks/README).
On CUDA, timings synchronise the device; TF32 stays off (plain fp32, as on the CPU).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

# libgomp reads OMP_WAIT_POLICY once, when torch loads it. The caller's value is used; unset, it
# is libgomp's default (spin a while, then sleep), not the PASSIVE that importing `pipeline` sets
# for the stages (that import comes after torch's here, and is undone for the spawned jobs below).
_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import cpu_name  # noqa: E402  (benchmarks/machine.py)

from pipeline.artifacts import atomic_path  # noqa: E402
from pipeline.lagnh import method  # noqa: E402
from pipeline.lagnh.model import build_models, pick_device, resolve_options  # noqa: E402
from pipeline.lagnh.training import train_step  # noqa: E402

if _WAIT_POLICY is None:
    os.environ.pop("OMP_WAIT_POLICY", None)

PAPER_TRAIN_S = 466.3686  # Table 4, MS COCO, 32 bits, one GTX 1080Ti
PAPER_ENCODE_S = 9.8646


def step_flops(batch: int, d: int, c: int, bits: int, d_att: int = 512, hidden: int = 1024,
               disc: tuple[int, ...] = (64, 32)) -> int:
    """Matmul FLOPs (2·m·k·n each) of one training step (1 D step + 1 G step), paper variant.

    Follows the implementation: factorised attention (rank q = c + 1), graph from one Gram
    matmul forward and two backward (autograd differentiates both operands of x x^T), GCN
    layer 1 aggregated first (d' <= hidden), layer 2 transformed first, cosine reconstruction
    (two matmuls backward).
    """
    b, a, q, h, r = batch, d_att, c + 1, hidden, bits

    def mm(m: int, k: int, n: int) -> int:
        return 2 * m * k * n

    widths = [r, *disc, 1]
    d_fwd = sum(mm(b, widths[i], widths[i + 1]) for i in range(len(widths) - 1))
    fwd = (mm(b, d, a)                                   # x̄ = X W_x^T
           + mm(b, q, a) + mm(b, a, q)                   # |ȳ| and x̂ B^T
           + mm(b, q, b) + mm(b, b, q + 1) + mm(b, q, a)  # α, α[C,1], (.)B
           + mm(b, c, b)                                 # S^a = Y Y^T
           + mm(b, a, b)                                 # Gram of x_att (Eq. 3)
           + mm(b, b, a) + mm(b, a, h)                   # layer 1: (S̃ X) W1^T
           + mm(b, h, r) + mm(b, b, r)                   # layer 2: S̃ (H W2^T)
           + mm(b, r, c)                                 # classifier head
           + mm(b, r, b)                                 # cos(Z, Z)
           + d_fwd)                                      # D(z) in the G loss
    bwd = (mm(b, d, a)                                   # dW_x only (X is data)
           + mm(b, q, a)                                 # |ȳ| -> basis
           + 2 * mm(b, a, q)                             # x̂ B^T -> x̂, B
           + 2 * mm(b, q, b)                             # α logits -> x̂B^T, C/|ȳ|
           + mm(b, b, q + 1)                             # α[C,1] -> α
           + 2 * mm(b, q, a)                             # (.)B -> (.), B
           + 2 * mm(b, b, a)                             # graph: Gram x x^T -> both x
           + 2 * mm(b, b, a) + 2 * mm(b, a, h)           # layer 1
           + 2 * mm(b, h, r) + 2 * mm(b, b, r)           # layer 2
           + 2 * mm(b, r, c)                             # head
           + 2 * mm(b, b, r)                             # fused cos reconstruction
           + d_fwd)                                      # D input grads down to z
    first = mm(b, widths[0], widths[1])
    # D step on prior + fake: forward, weight grads, input grads of the hidden layers
    d_step = 2 * d_fwd + 2 * d_fwd + 2 * (d_fwd - first)
    return fwd + bwd + d_step


def epoch_flops(n: int, batch: int, d: int, c: int, bits: int) -> int:
    """Matmul FLOPs of one epoch: :func:`step_flops` summed over its batches (the last one
    holds the remainder, e.g. 5,000 = 4 x 1,024 + 904)."""
    sizes = [batch] * (n // batch) + ([n % batch] if n % batch else [])
    return sum(step_flops(b, d, c, bits) for b in sizes)


def step_inputs(batch: int, d: int, c: int, bits: int, device: torch.device) -> tuple:
    """Arguments of one :func:`train_step` (paper variant, seed 0): networks, their Adam
    optimisers and a random batch of ReLU features with about 2.9 of c = 80 labels on."""
    opts = resolve_options({"device": device.type})
    torch.manual_seed(0)
    gen, disc = build_models(d, c, bits, opts)
    gen.to(device)
    disc.to(device)
    og = torch.optim.Adam(gen.parameters(), lr=1e-4)
    od = torch.optim.Adam(disc.parameters(), lr=1e-4)
    x = torch.relu(torch.randn(batch, d, device=device))
    y = (torch.rand(batch, c, device=device) < 0.036).float()
    return gen, disc, og, od, x, y


def counted_flops(batch: int, d: int, c: int, bits: int, device: torch.device) -> int:
    """FLOPs of one real training step by ``FlopCounterMode`` (cross-check of step_flops)."""
    from torch.utils.flop_counter import FlopCounterMode

    args = step_inputs(batch, d, c, bits, device)
    with FlopCounterMode(display=False) as counter:
        train_step(*args)
    return int(counter.get_total_flops())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Dense fp32 matmul rate (GFLOP/s): median of ``repeats`` n×n×n products after warm-up."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def synthetic(n: int, d: int, c: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Features correlated with multi-hot labels (about 2.9 of c = 80 per image), fp32."""
    y = (rng.random((n, c), dtype=np.float32) < 2.9 / c).astype(np.uint8)
    proto = rng.standard_normal((c, d), dtype=np.float32)
    x = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 8192):
        e = min(s + 8192, n)
        x[s:e] = np.maximum(y[s:e] @ proto + rng.standard_normal((e - s, d), dtype=np.float32), 0)
    return x, y


def matmul_floor(batch: int, d: int, c: int, bits: int, device: torch.device,
                 repeats: int = 10) -> tuple[float, int]:
    """Seconds for the matmuls of one training step alone, replayed back to back (median of
    ``repeats``), and their FLOPs. The matmuls (``mm``/``addmm`` with their operands' shapes and
    strides) are captured from a real step by a dispatch mode."""
    from torch.utils._python_dispatch import TorchDispatchMode

    matmuls = (torch.ops.aten.mm.default, torch.ops.aten.addmm.default)
    calls: list[tuple] = []

    class Capture(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            if func in matmuls:
                calls.append((func, [a.detach().clone() if isinstance(a, torch.Tensor) else a
                                     for a in args], dict(kwargs or {})))
            return func(*args, **(kwargs or {}))

    args = step_inputs(batch, d, c, bits, device)
    train_step(*args)
    with Capture():
        train_step(*args)
    flops = sum(2 * a[-2].shape[0] * a[-2].shape[1] * a[-1].shape[1] for _, a, _ in calls)

    def replay() -> None:
        for func, a, kw in calls:
            func(*a, **kw)

    replay()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        replay()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), flops


def _train_job(cfg: dict, rank: int, start, results) -> None:  # noqa: ANN001
    """One training process of ``--jobs``: own data, ``cfg['threads']`` threads, same seed."""
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    rng = np.random.default_rng(rank)
    x, y = synthetic(cfg["n_train"], cfg["dim"], cfg["classes"], rng)
    start.wait()
    state = method.fit(x, y, cfg["bits"], cfg["params"], seed=rank)
    # as bytes: tensors in a queue travel as file descriptors that die with this process
    buf = io.BytesIO()
    torch.save(state if rank == 0 else {"history": state["history"]}, buf)
    results.put((rank, buf.getvalue()))


def train_jobs(cfg: dict, jobs: int) -> tuple[dict, list[float]]:
    """Run ``jobs`` trainings at once (spawned processes, started together after their data is
    made); returns job 0's state and each job's ms/step (epochs after the first)."""
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(jobs)
    results = ctx.Queue()
    procs = [ctx.Process(target=_train_job, args=(cfg, r, start, results)) for r in range(jobs)]
    for p in procs:
        p.start()
    got = {rank: torch.load(io.BytesIO(blob), weights_only=False)
           for rank, blob in (results.get() for _ in procs)}
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"training job exited with {p.exitcode}")
    steps = -(-cfg["n_train"] // cfg["params"]["batch_size"])
    ms = []
    for r in range(jobs):
        hist = got[r]["history"]
        timed = hist[1:] if len(hist) > 1 else hist
        ms.append(1000 * statistics.mean(row["seconds"] for row in timed) / steps)
    return got[0], ms


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=300, help="epochs to time (300 = full run)")
    ap.add_argument("--n-train", type=int, default=5000)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--classes", type=int, default=80)
    ap.add_argument("--bits", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--n-encode", type=int, default=118287)
    ap.add_argument("--neighbors", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads per training job (default: torch's, divided by --jobs)")
    ap.add_argument("--jobs", type=int, default=1, help="trainings run at once (CPU only)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--out", type=Path, default=None, help="append the markdown table here")
    args = ap.parse_args(argv)

    device = pick_device(args.device)
    if args.jobs < 1 or (args.jobs > 1 and device.type != "cpu"):
        ap.error("--jobs must be >= 1, and 1 on CUDA")
    threads = args.threads or max(1, torch.get_num_threads() // args.jobs)
    total_threads = threads * args.jobs
    torch.set_num_threads(total_threads)  # matmul rate, floor, encoding: the whole budget
    load0 = os.getloadavg()
    params = {"epochs": args.epochs, "batch_size": args.batch, "device": device.type,
              "encode_neighbors": args.neighbors}
    cfg = {"threads": threads, "n_train": args.n_train, "dim": args.dim,
           "classes": args.classes, "bits": args.bits, "params": params}

    rate0 = matmul_rate(device)
    if args.jobs == 1:
        torch.set_num_threads(threads)
        rng = np.random.default_rng(0)
        x_train, y_train = synthetic(args.n_train, args.dim, args.classes, rng)
        state = method.fit(x_train, y_train, args.bits, params, seed=0)
        hist = state["history"]
        timed = hist[1:] if len(hist) > 1 else hist
        steps = -(-args.n_train // args.batch)
        ms_jobs = [1000 * statistics.mean(row["seconds"] for row in timed) / steps]
        torch.set_num_threads(total_threads)
    else:
        state, ms_jobs = train_jobs(cfg, args.jobs)
    rate1 = matmul_rate(device)
    steps = -(-args.n_train // args.batch)
    ms_step = statistics.mean(ms_jobs)
    full_s = ms_step * steps * 300 / 1000
    flops = step_flops(args.batch, args.dim, args.classes, args.bits)
    counted = counted_flops(args.batch, args.dim, args.classes, args.bits, device)
    per_epoch = epoch_flops(args.n_train, args.batch, args.dim, args.classes, args.bits)
    # achieved rate = an epoch's FLOPs / an epoch's time, summed over the jobs
    gflops = sum(per_epoch / (ms * steps / 1000) / 1e9 for ms in ms_jobs)
    rate = (rate0 + rate1) / 2
    torch.set_num_threads(threads)  # the floor of one job, as that job runs it
    floor_s, floor_flops = matmul_floor(args.batch, args.dim, args.classes, args.bits, device)
    floor_rate = matmul_rate(device)
    floor_pct = 100 * floor_flops / floor_s / 1e9 / floor_rate
    torch.set_num_threads(total_threads)

    rng = np.random.default_rng(1)
    x_enc, y_enc = synthetic(args.n_encode, args.dim, args.classes, rng)
    enc = {}
    for mode in ("inductive", "batch"):
        sync(device)
        t0 = time.perf_counter()
        codes = method.encode(state, x_enc, y_enc, {**params, "encode_mode": mode})
        sync(device)
        enc[mode] = time.perf_counter() - t0
        assert codes.shape == (args.n_encode, args.bits)
    load1 = os.getloadavg()

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    wait = _WAIT_POLICY or "unset: spin, then sleep"
    layout = f"{args.jobs} × {threads}" if args.jobs > 1 else f"{threads}"
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        f"### LAGNH speed, {when} — {name} ({device.type}, torch {torch.__version__})",
        "",
        f"Synthetic COCO-shaped data: {args.n_train:,} training images × {args.dim:,}-d, "
        f"{args.classes} aux classes, {args.bits} bits, batch {args.batch:,} ({steps} steps/epoch),"
        f" paper variant; timed {args.epochs} epoch(s)"
        + (", first excluded as warm-up" if args.epochs > 1 else "")
        + (", 300-epoch time extrapolated from ms/step" if args.epochs < 300 else "")
        + (f"; {args.jobs} trainings at once, ms/step per job: "
           + ", ".join(f"{m:.1f}" for m in ms_jobs) if args.jobs > 1 else "") + ".",
        "",
        "| device | jobs × threads (OMP_WAIT_POLICY) | load avg (1 min) before → after "
        "| ms/step | 300 epochs (s) | GFLOP/step (full batch) "
        "| GFLOP/epoch | achieved GFLOP/s | matmul rate GFLOP/s "
        "(before/after) | % of matmul rate | matmul-only floor | "
        f"encode {args.n_encode:,}: inductive / batch (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {name} | {layout} ({wait}) | {load0[0]:.2f} → {load1[0]:.2f} "
        f"| {ms_step:.1f} "
        f"| {full_s:.1f}{' (extrapolated)' if args.epochs < 300 else ''} "
        f"| {flops / 1e9:.2f} (counter: {counted / 1e9:.2f}) | {per_epoch / 1e9:.2f} "
        f"| {gflops:.1f} "
        f"| {rate:.1f} ({rate0:.1f}/{rate1:.1f}) | **{100 * gflops / rate:.0f}%** "
        f"| {1000 * floor_s:.1f} ms = {floor_pct:.0f}% "
        f"| {enc['inductive']:.2f} / {enc['batch']:.2f} |",
        "",
        f"Paper (one GTX 1080Ti): training {PAPER_TRAIN_S} s, encoding {PAPER_ENCODE_S} s; "
        f"speed-up here: training {PAPER_TRAIN_S / full_s:.2f}× per job, inductive encoding "
        f"{PAPER_ENCODE_S / enc['inductive']:.2f}×.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        before = args.out.read_text() if args.out.exists() else ""
        with atomic_path(args.out) as tmp:  # appended as a whole, never half-written
            tmp.write_text(before + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
