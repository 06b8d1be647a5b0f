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
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import numpy as np
from batching import DATA, load_mix

from eqr.model.checkpoint import default_model_dir
from eqr.model.tasks.sudoku import to_string

CLI = [sys.executable, "-m", "eqr.server.cli"]
MIX_SIZE = 96  # distinct puzzles of the mix (the easy files hold 80); longer loads cycle through them


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def process(args: list[str], log: Path) -> Iterator[subprocess.Popen]:
    """A child process for the duration of the block, stopped with SIGTERM (then SIGKILL)."""
    with log.open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=out, env={**os.environ, "EQR_LOG_LEVEL": "warning"})
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_ok(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0, json_key: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            sys.exit(f"{' '.join(proc.args[:5])} exited:\n{log.read_text()}")
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == 200 and (json_key is None or r.json().get(json_key)):
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"{url} not ready after {timeout:.0f} s:\n{log.read_text()}")
        time.sleep(0.2)


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
    port = free_port()
    log = tmp / "serve.log"
    engine = ["--model", str(args.model), "--slots", str(args.slots), "--threads", str(threads)]
    with process([*CLI, "serve", "--port", str(port), *engine], log) as proc:
        wait_ok(f"http://127.0.0.1:{port}/readyz", proc, log)
        return asyncio.run(drive(f"http://127.0.0.1:{port}", puzzles, args.depth, args.concurrency))


def run_distributed(args: argparse.Namespace, puzzles: list[str], tmp: Path) -> dict:
    redis_server = shutil.which("redis-server") or sys.exit("redis-server not found: apt-get install -y redis-server")
    rport, aport = free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{rport}/0"
    engine = ["--model", str(args.model), "--slots", str(args.slots), "--threads", str(args.threads)]
    with ExitStack() as stack:
        persistence = ["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp)]
        stack.enter_context(process([redis_server, "--port", str(rport), *persistence], tmp / "redis.log"))
        api_log = tmp / "api.log"
        api = stack.enter_context(process([*CLI, "api", "--redis", redis_url, "--port", str(aport)], api_log))
        for i in range(args.workers):
            worker = [*CLI, "worker", "--redis", redis_url, "--name", f"bench-{i}", "--metrics-port", str(free_port())]
            stack.enter_context(process([*worker, *engine], tmp / f"worker-{i}.log"))
        url = f"http://127.0.0.1:{aport}"
        wait_ok(f"{url}/readyz", api, api_log)
        deadline = time.monotonic() + 120
        while httpx.get(f"{url}/readyz").json().get("capacity") != args.slots * args.workers:
            if time.monotonic() > deadline:
                sys.exit("not every worker registered:\n" + api_log.read_text())
            time.sleep(0.2)
        return asyncio.run(drive(url, puzzles, args.depth, args.concurrency))


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
    mix = [to_string(p) for p, _ in load_mix(min(args.puzzles, MIX_SIZE), args.data, args.seed)]
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
