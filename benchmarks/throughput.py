"""Engine throughput at a model size, with random weights: slot-iterations/s and puzzles/s.

    python benchmarks/throughput.py [--device cuda] [--hidden 512] [--slots 256 1024]
                                    [--dtype float32 bfloat16] [--depth 32] [--seconds 10] [--json PATH]

Model: the paper's released Sudoku architecture (configs/sudoku-paper.json) with ``--hidden``
overridden and random weights: speed does not depend on them. The engine runs exactly as a server
runs it (its own thread, the fast step: Triton kernels in CUDA graphs on a GPU, CpuStep on a CPU),
with the convergence tolerance at 0 so every trajectory runs its whole ``--depth``: the work per
puzzle is fixed and the numbers compare across devices and sizes.

Load: all at once, enough breadth-1 jobs to keep the pool full for about ``--seconds`` (sized from a
short warm-up that also captures the CUDA graphs), so trajectories leave and join slots every
``--depth`` iterations as under continuous batching. slot-iterations/s counts the iterations the
results report, over the wall time from the first submit to the last result.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import wait
from pathlib import Path

import torch

from eqr.model.config import EqRConfig
from eqr.model.network import EqRNetwork
from eqr.model.tasks.sudoku import SudokuTask
from eqr.server.engine import Engine, EngineConfig, Job, SolveParams

ARCH = Path(__file__).resolve().parent.parent / "configs" / "sudoku-paper.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def build(hidden: int, device: str, dtype: torch.dtype) -> EqRNetwork:
    arch = json.loads(ARCH.read_text())["arch"]
    arch["hidden_size"] = hidden
    torch.manual_seed(0)
    return EqRNetwork(EqRConfig.from_dict(arch)).to(device=device, dtype=dtype).eval()


def run_jobs(engine: Engine, count: int, depth: int, offset: int) -> tuple[float, int]:
    """Submit ``count`` random puzzles at once; (seconds to the last result, iterations reported)."""
    gen = torch.Generator().manual_seed(offset)
    cells = engine.task.seq_len
    puzzles = torch.randint(0, engine.task.vocab_size, (count, cells), generator=gen).tolist()
    t0 = time.perf_counter()
    futures = [engine.submit(Job(p, SolveParams(depth=depth, seed=offset + i))) for i, p in enumerate(puzzles)]
    wait(futures)
    wall = time.perf_counter() - t0
    results = [f.result() for f in futures]
    failed = [r.error for r in results if r.error]
    if failed:
        raise SystemExit(f"{len(failed)} jobs failed: {failed[0]}")
    return wall, sum(sum(r.iterations) for r in results)


def measure(hidden: int, slots: int, dtype: str, args: argparse.Namespace) -> dict:
    model = build(hidden, args.device, DTYPES[dtype])
    config = EngineConfig(
        slots=slots, max_queue=1 << 20, max_depth=args.depth, device=args.device, tol=0.0, window=args.depth
    )
    engine = Engine(model, config, task=SudokuTask(), model_name="random")
    engine.start()
    try:
        # warm-up: two pool-fulls (every CUDA-graph bucket the drain passes through), and the step rate
        wall, iters = run_jobs(engine, 2 * slots, args.depth, offset=0)
        count = max(slots, int(iters / wall * args.seconds / args.depth))
        wall, iters = run_jobs(engine, count, args.depth, offset=1 << 20)
    finally:
        engine.stop()
    return {
        "hidden": hidden,
        "slots": slots,
        "dtype": dtype,
        "depth": args.depth,
        "puzzles": count,
        "seconds": wall,
        "slot_iterations_per_s": iters / wall,
        "puzzles_per_s": count / wall,
        "ms_per_step": 1000 * wall * slots / iters,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--hidden", type=int, nargs="+", default=[512])
    parser.add_argument("--slots", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--dtype", nargs="+", choices=DTYPES, default=None, help="default: both on CUDA, fp32 on CPU")
    parser.add_argument("--depth", type=int, default=32, help="iterations every trajectory runs")
    parser.add_argument("--seconds", type=float, default=10.0, help="about how long each measured load runs")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    dtypes = args.dtype or (list(DTYPES) if args.device.startswith("cuda") else ["float32"])
    print(f"device {args.device}, depth {args.depth}, random weights, every trajectory runs its whole depth")
    print(f"{'hidden':>6s} {'slots':>6s} {'dtype':9s} {'puzzles':>8s} {'s':>7s} {'slot-it/s':>11s} {'puzzles/s':>10s} "
          f"{'ms/step':>8s}")  # fmt: skip
    rows = []
    for hidden in args.hidden:
        for dtype in dtypes:
            for slots in args.slots:
                r = measure(hidden, slots, dtype, args)
                rows.append(r)
                print(
                    f"{hidden:6d} {slots:6d} {dtype:9s} {r['puzzles']:8d} {r['seconds']:7.1f} "
                    f"{r['slot_iterations_per_s']:11.0f} {r['puzzles_per_s']:10.1f} {r['ms_per_step']:8.2f}",
                    flush=True,
                )
    if len(args.slots) > 1:
        for hidden in args.hidden:
            for dtype in dtypes:
                by = {r["slots"]: r for r in rows if r["hidden"] == hidden and r["dtype"] == dtype}
                lo, hi = min(by), max(by)
                ratio = by[hi]["slot_iterations_per_s"] / by[lo]["slot_iterations_per_s"]
                print(f"hidden {hidden} {dtype}: {hi} slots give {ratio:.2f}x the slot-iterations/s of {lo}")
    if args.json:
        args.json.write_text(json.dumps({"device": args.device, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
