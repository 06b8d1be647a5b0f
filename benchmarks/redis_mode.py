"""Distributed mode (Redis + ``eqr api`` + N ``eqr worker``) vs embedded mode (``eqr serve``), puzzles/s.

    python benchmarks/redis_mode.py [--model DIR] [--puzzles 256] [--workers 2] [--slots 32] [--depth 64]

Both modes serve the same model to the same load over HTTP on this machine: the mixed Sudoku load of
``batching.py`` (80% easy, 20% hard, every request seeded, 96 distinct puzzles cycled), sent as ``/v1/solve`` calls with
``--concurrency`` in flight. Each engine gets ``--slots`` slots and ``--threads`` torch threads, so
the distributed mode has ``--workers`` times the slots and threads of the embedded one; on a machine
with fewer cores than engines the workers share them. Redis runs as deployed (``appendonly yes``,
``appendfsync always``). The table gives throughput and HTTP latency; the last line the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from batching import DATA, SUDOKU, load_mix
from servers import distributed, embedded

from eqr.model.bundled import default_model_dir

MIX_SIZE = 96  # distinct puzzles of the mix (the easy files hold 80); longer loads cycle through them


async def drive(url: str, puzzles: list[str], depth: int, concurrency: int) -> dict:
    """Send every puzzle as one ``/v1/solve``, ``concurrency`` at a time; wall time and latencies."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    solved = 0

    async with httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def one(seed: int, puzzle: str) -> None:
            nonlocal solved
            async with gate:
                t0 = time.perf_counter()
                r = await client.post("/v1/solve", json={"puzzle": puzzle, "depth": depth, "seed": seed})
                latencies.append(time.perf_counter() - t0)
                r.raise_for_status()
                solved += r.json()["valid"]

        await asyncio.gather(*(one(i, p) for i, p in enumerate(puzzles[: min(8, len(puzzles))])))  # warm-up
        latencies.clear()
        solved = 0
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i, p) for i, p in enumerate(puzzles)))
        wall = time.perf_counter() - t0
    return {"wall": wall, "rate": len(puzzles) / wall, "latencies": latencies, "solved": solved}


def run_embedded(args: argparse.Namespace, puzzles: list[str], tmp: Path, threads: int) -> dict:
    with embedded(args.model, args.slots, threads, tmp) as deployment:
        return asyncio.run(drive(deployment.url, puzzles, args.depth, args.concurrency))


def run_distributed(args: argparse.Namespace, puzzles: list[str], tmp: Path) -> dict:
    with distributed(args.model, args.slots, args.threads, args.workers, tmp) as deployment:
        return asyncio.run(drive(deployment.url, puzzles, args.depth, args.concurrency))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=default_model_dir(), help="model folder (default: bundled)")
    ap.add_argument("--puzzles", type=int, default=256)
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--slots", type=int, default=32, help="slots of each engine")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each engine")
    ap.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    # the mix is token ids; the API reads puzzles as clients write them (81 characters)
    mix = [SUDOKU.board(np.asarray(p)) for p, _ in load_mix(min(args.puzzles, MIX_SIZE), args.data, args.seed)]
    puzzles = [mix[i % len(mix)] for i in range(args.puzzles)]  # repeats run with other seeds
    print(f"{args.puzzles} puzzles (80% easy), depth {args.depth}, {args.concurrency} in flight, {os.cpu_count()} CPUs")
    # the embedded engine runs with the threads of one worker, and with the threads of all of them
    thread_counts = list(dict.fromkeys([args.threads, args.threads * args.workers]))
    with tempfile.TemporaryDirectory(prefix="eqr-bench-") as tmp:
        embedded = {t: run_embedded(args, puzzles, Path(tmp), t) for t in thread_counts}
        distributed = run_distributed(args, puzzles, Path(tmp))
    rows = [(f"embedded: eqr serve, {args.slots} slots, {t} thread(s)", r) for t, r in embedded.items()]
    rows.append((f"redis: api + {args.workers} workers x {args.slots} slots, {args.threads} thread(s)", distributed))
    print(f"\n{'mode':<58} {'puzzles/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'solved':>7}")
    for name, r in rows:
        p50, p99 = (float(np.percentile(r["latencies"], q)) * 1000 for q in (50, 99))
        print(f"{name:<58} {r['rate']:>10.1f} {p50:>8.0f} {p99:>8.0f} {r['solved']:>7}")
    ratios = [f"{distributed['rate'] / r['rate']:.2f}x vs embedded with {t} thread(s)" for t, r in embedded.items()]
    print(f"\nratio redis / embedded: {', '.join(ratios)}")


if __name__ == "__main__":
    main()
