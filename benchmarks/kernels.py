"""Fused ops and the whole iteration: eager vs torch.compile vs Triton, and the CPU fast step.

    python benchmarks/kernels.py [--quick] [--hidden 128 512] [--batch 64 256 1024] [--reps 3]
                                 [--no-compile] [--max-seconds 60] [--device cpu|cuda] [--json PATH]

Model: the paper's released Sudoku architecture (configs/sudoku-paper.json: token-mixing MLP,
2 layers, 16-token prefix so S=97, 42 blocks per iteration) with the hidden size overridden;
random weights (speed does not depend on them). fp32 on CPU, bf16 on CUDA.

Per op (the fused ops at the step's shapes): µs per call and GB/s over the bytes the op must
move. Paths: eager reference, torch.compile of the reference, Triton (CUDA only).

Whole step (``iterate`` on a batch of slots): ms per iteration and GFLOP/s over the exact matmul
FLOPs of the iteration (eqr/kernels/flops.py). CPU paths: eager reference, reference with the
block stack compiled, and CpuStep (the automatic CPU choice). CUDA paths: eager reference,
torch.compile(mode="reduce-overhead", i.e. with CUDA graphs), Triton eager, Triton + GraphStep.
On CPU, a step whose estimated eager time exceeds --max-seconds is timed on a shortened iteration
(H_cycles=L_cycles=1: 4 of the 42 blocks, the same work per block, so the same GFLOP/s), marked
"short"; if even that is too long, only CpuStep is timed ("vs eager" then shows "-"). "eager 1
thread" is the reference with one intra-op thread: on a loaded machine, OpenMP barriers waiting
for a descheduled thread can make the default two-thread eager step several times slower.

Machine rate (CPU): a plain torch.mm of the channel MLP's gate_up shape [B·S, D] @ [D, 2I]
measured in the same run, as the best of one call on all threads and one single-threaded call
per core running concurrently (the scheme CpuStep uses); "% mm" is the step's GFLOP/s over it.
Timings are the minimum over --reps repetitions, with paths interleaved so that load from other
processes hits all alike; compare ratios within one run.

--quick: hidden 128, batch 64 only (the acceptance point), in about two minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from eqr.kernels import dispatch, reference
from eqr.kernels.reference import SlotNoise
from eqr.model.config import EqRConfig
from eqr.model.flops import iteration_flops
from eqr.model.network import EqRNetwork, swiglu_width
from eqr.model.step import StepBatch, fresh_batch
from eqr.runtime.cpu_step import CpuStep, available_cores
from eqr.runtime.graph_step import GraphStep

ARCH = Path(__file__).resolve().parent.parent / "configs" / "sudoku-paper.json"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_times(fns: dict[str, Callable[[], object]], reps: int, device: torch.device) -> dict[str, float]:
    """Minimum seconds per call of each fn, with the fns interleaved rep by rep (after one warm-up each)."""
    for fn in fns.values():
        fn()
    sync(device)
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(reps):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def matmul_paths(
    m: int, k: int, n: int, total_flops: int, device: torch.device, dtype: torch.dtype
) -> tuple[dict[str, Callable[[], object]], int]:
    """The machine-rate probes: torch.mm [m,k]@[k,n] repeated to ``total_flops``, on all threads in one
    call after another, and (CPU, several cores) one single-threaded stream per core concurrently.

    Each probe does about a step's worth of FLOPs, so it runs about as long as the step and sees
    the same load from other processes; a few-millisecond probe would catch a quiet moment.
    """
    a, b = torch.randn(m, k, device=device, dtype=dtype), torch.randn(k, n, device=device, dtype=dtype)
    cores = available_cores() if device.type == "cpu" else 1
    count = max(cores, round(total_flops / (2 * m * k * n)) // cores * cores)

    def serial() -> None:
        for _ in range(count):
            torch.mm(a, b)

    paths: dict[str, Callable[[], object]] = {"mm all threads": serial}
    if cores > 1:
        pool = ThreadPoolExecutor(cores)
        copies = [(a.clone(), b.clone()) for _ in range(cores)]

        def stream(ab: tuple[torch.Tensor, torch.Tensor]) -> None:
            for _ in range(count // cores):
                torch.mm(*ab)

        def per_core() -> None:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                list(pool.map(stream, copies))
            finally:
                torch.set_num_threads(threads)

        paths["mm 1 thread/core"] = per_core
    return paths, count * 2 * m * k * n


def build(hidden: int, device: torch.device, dtype: torch.dtype, short: bool = False) -> EqRNetwork:
    arch = json.loads(ARCH.read_text())["arch"]
    arch["hidden_size"] = hidden
    if short:
        arch["H_cycles"], arch["L_cycles"] = 1, 1
    torch.manual_seed(0)
    return EqRNetwork(EqRConfig.from_dict(arch)).to(device=device, dtype=dtype).eval()


def step_inputs(model: EqRNetwork, batch: int) -> StepBatch:
    cfg, device = model.cfg, next(model.parameters()).device
    tokens = torch.randint(1, cfg.vocab_size, (batch, cfg.seq_len), device=device)
    return fresh_batch(model, tokens, torch.arange(batch, device=device), cfg.noise_scale)


def one_thread(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run with a single intra-op thread (immune to OpenMP barriers stalled by other processes)."""

    def run() -> object:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn()
        finally:
            torch.set_num_threads(threads)

    return run


def bench_ops(
    cfg: EqRConfig, batch: int, device: torch.device, dtype: torch.dtype, args: argparse.Namespace
) -> list[dict]:
    """Print the per-op table; its rows (seconds per call of each path) for ``--json``."""
    s, d = cfg.seq_total, cfg.hidden_size
    inner, inner_t = swiglu_width(d, cfg.expansion, cfg.multiple_of), swiglu_width(s, cfg.expansion, cfg.multiple_of)
    es = torch.finfo(dtype).bits // 8

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=device, dtype=dtype)

    x, r = rnd(batch, s, d), rnd(batch, s, d)
    noise = SlotNoise(
        torch.arange(batch, device=device), torch.zeros(batch, dtype=torch.long, device=device),
        torch.full((batch,), 0.01, device=device),
    )  # fmt: skip
    logits, prev = rnd(batch, cfg.seq_len, cfg.vocab_size), rnd(batch, cfg.seq_len, cfg.vocab_size)
    prev_pred = torch.zeros(batch, cfg.seq_len, dtype=torch.long, device=device)
    gu_c, gu_t = rnd(batch, s, 2 * inner), rnd(batch, 2 * inner_t, d)
    # (name, reference fn, dispatch fn, bytes moved)
    ops: list[tuple[str, Callable[[], object], Callable[[], object], int]] = [
        ("add+rmsnorm channels", lambda: reference.add_rms_norm(x, r, 1e-5), lambda: dispatch.add_rms_norm(x, r, 1e-5),
         3 * x.numel() * es),
        ("add+rmsnorm positions", lambda: reference.add_rms_norm(x, r, 1e-5, -2),
         lambda: dispatch.add_rms_norm(x, r, 1e-5, -2), 3 * x.numel() * es),
        ("swiglu channels", lambda: reference.swiglu(gu_c), lambda: dispatch.swiglu(gu_c), 3 * gu_c.numel() // 2 * es),
        ("swiglu positions", lambda: reference.swiglu(gu_t, -2), lambda: dispatch.swiglu(gu_t, -2),
         3 * gu_t.numel() // 2 * es),
        ("damped update+noise", lambda: reference.damped_update(x, r, 0.95, noise, 3),
         lambda: dispatch.damped_update(x, r, 0.95, noise, 3, base=x), 4 * x.numel() * es),
        ("step deltas", lambda: reference.step_deltas(logits, prev, prev_pred),
         lambda: dispatch.step_deltas(logits, prev, prev_pred), 2 * logits.numel() * es),
    ]  # fmt: skip
    print(f"\nper op, hidden {d}, batch {batch} ({dtype}, {device.type}): µs per call (GB/s), speed-up vs eager")
    rows: list[dict] = []
    for name, ref_fn, kernel_fn, nbytes in ops:
        fns: dict[str, Callable[[], object]] = {"eager": ref_fn}
        if device.type == "cpu":
            fns["eager 1 thread"] = one_thread(ref_fn)
        if not args.no_compile:
            fns["compile"] = torch.compile(ref_fn, dynamic=False)
        if device.type == "cuda":
            fns["triton"] = kernel_fn
        t = best_times(fns, args.reps * 10, device)  # short calls: more tries to find a moment free of other load
        cells = [
            f"{path} {sec * 1e6:.0f} ({nbytes / sec / 1e9:.1f}) {t['eager'] / sec:.2f}x" for path, sec in t.items()
        ]
        print(f"  {name:22s} " + " | ".join(cells))
        rows.append({"op": name, "hidden": d, "batch": batch, "bytes": nbytes, "seconds": t})
    return rows


def step_paths(
    model: EqRNetwork, batch: int, args: argparse.Namespace, slow_paths: bool
) -> dict[str, Callable[[], object]]:
    """The whole-iteration paths to time on ``model``'s device, each a no-argument call.

    ``slow_paths`` False leaves out the CPU reference paths (eager and compiled), when they would take too long.
    """
    inputs = step_inputs(model, batch)
    device = inputs.z_H.device
    paths: dict[str, Callable[[], object]] = {}
    if device.type == "cpu":
        if slow_paths:
            paths["eager"] = lambda: model.iterate(inputs)
            paths["eager 1 thread"] = one_thread(lambda: model.iterate(inputs))
            if not args.no_compile:
                compiled = copy.deepcopy(model)
                compiled.L_level = torch.compile(compiled.L_level, dynamic=False)
                paths["compile(blocks)"] = lambda: compiled.iterate(inputs)
        if model.cfg.mlp_t:
            cpu = CpuStep(model)
            paths[f"CpuStep x{cpu.workers}"] = lambda: cpu.iterate(inputs)
        return paths

    def on_reference(fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            with dispatch.use_backend("reference"):
                return fn()

        return run

    paths["eager"] = on_reference(lambda: model.iterate(inputs))
    if not args.no_compile:
        compiled = torch.compile(model.iterate, mode="reduce-overhead", dynamic=False)
        paths["compile+graphs"] = on_reference(lambda: compiled(inputs))
    paths["triton"] = lambda: model.iterate(inputs)
    graph = GraphStep(model, inputs)
    paths["triton+graphs"] = lambda: graph.iterate(inputs)
    return paths


def bench_step(hidden: int, batch: int, device: torch.device, dtype: torch.dtype, args: argparse.Namespace) -> dict:
    """Print the whole-step rows; seconds per iteration of each path, FLOPs and the machine rate for ``--json``."""
    full = build(hidden, device, dtype)
    model, label, slow_paths = full, "full", True
    # the eager CPU step runs at roughly 10 GFLOP/s here: shorten the iteration, then drop the slow paths
    est = iteration_flops(full.cfg, batch) / 10e9
    if device.type == "cpu" and est > args.max_seconds:
        model, label = build(hidden, device, dtype, short=True), "short"
        slow_paths = est * model.cfg.blocks_per_step / full.cfg.blocks_per_step <= args.max_seconds
    cfg = model.cfg
    flops = iteration_flops(cfg, batch)
    inner = swiglu_width(hidden, cfg.expansion, cfg.multiple_of)
    probes, probe_flops = matmul_paths(batch * cfg.seq_total, hidden, 2 * inner, flops, device, dtype)
    t = best_times({**probes, **step_paths(model, batch, args, slow_paths)}, args.reps, device)
    rate = max(probe_flops / t.pop(name) for name in probes) / 1e9
    print(
        f"{hidden:6d} {batch:6d} {label:5s} {'machine (mm)':18s} {'':>11s} {rate:9.1f}   100% "
        f"  [torch.mm {batch * cfg.seq_total}x{hidden} @ {hidden}x{2 * inner}]"
    )
    for name, sec in t.items():
        gflops = flops / sec / 1e9
        vs_eager = f"{t['eager'] / sec:8.2f}x" if "eager" in t else "       -"
        print(
            f"{hidden:6d} {batch:6d} {label:5s} {name:18s} {sec * 1e3:11.1f} {gflops:9.1f} {100 * gflops / rate:5.0f}% "
            f"{vs_eager}"
        )
    return {"hidden": hidden, "batch": batch, "depth": label, "flops": flops, "mm_gflops": rate, "seconds": t}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="hidden 128, batch 64 only")
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile paths")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="CPU: shorten/skip steps longer than this")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, help="also write every timing as JSON")
    args = parser.parse_args()
    logging.getLogger("torch._dynamo").setLevel(logging.ERROR)  # graph-break notices (the noise skip test) are expected
    if args.quick:
        args.hidden, args.batch = [128], [64]
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    print(f"device {device}, {available_cores()} cores, torch threads {torch.get_num_threads()}, dtype {dtype}")
    ops = [
        row for hidden in args.hidden for batch in args.batch
        for row in bench_ops(build(hidden, device, dtype).cfg, batch, device, dtype, args)
    ]  # fmt: skip
    print("\nwhole step: ms per iteration, GFLOP/s (exact matmul FLOPs), % of the machine's mm rate, speed-up vs eager")
    columns = ("hidden", 6), ("batch", 6), ("depth", -5), ("path", -18), ("ms/iter", 11), ("GFLOP/s", 9), ("% mm", 6)
    print(" ".join(f"{name:>{w}s}" if w > 0 else f"{name:{-w}s}" for name, w in columns), " vs eager")
    steps = [bench_step(hidden, batch, device, dtype, args) for hidden in args.hidden for batch in args.batch]
    if args.json:
        doc = {"device": str(device), "dtype": str(dtype), "ops": ops, "steps": steps}
        args.json.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
