"""Fair, preemptive scheduling against first-come, on the same open-loop arrivals (one command).

    python benchmarks/scheduling.py [--duration 60] [--loads 0.5,0.8,0.95] [--png scheduling.png]

Arrivals are open-loop and seeded: Poisson at a rate that puts ``load`` x the pool's capacity of
work on it. The mix: easy Sudoku puzzles (easy50, printable30; the model's defaults), hard ones
(top95 at depth 256, breadth 4, vote), a few very large verified requests (top95, ``verify``,
breadth 16, ``--verified-budget`` iterations) and mazes (maze11, the maze model, its own engine as
``eqr serve`` runs one per model). Each policy (``fcfs``: the first-come scheduler, a trajectory
keeps its slot until it ends; ``fair``: preemptive, least attained service first, shares, idle
slots used) serves the very same arrivals, each engine in its own thread as served. Capacity is
measured first: the Sudoku pool's slot-iterations per second when full, and each class's mean
demand in slot-iterations (alone, fcfs).

Reported per load and policy: latency (arrival to result) p50/p99 per class, throughput (requests
finished per second of the run until the last one finished), utilisation (live slots / slots,
time-weighted over steps), preemptions; a PNG of p99 latency against load per policy and class; the
ratios at the load nearest 80% last. Both policies run the same trajectories (same seeds), so their
answers for fixed-breadth requests agree; work-conserving breadth may add trajectories to the
verified ones when slots idle.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from puzzle_sets import BUNDLED, ROOT, SHARED
from stats import percentile

from eqr.model.checkpoint import load_model
from eqr.model.tasks.registry import task_for
from eqr.runtime.step import preferred_slots
from eqr.server.engine import Engine, EngineConfig, Job, SolveParams

DATA = SHARED if SHARED.is_dir() else BUNDLED
CLASSES = ("easy", "hard", "verified", "maze")


@dataclass
class Arrival:
    at: float  # seconds after the run starts
    cls: str
    tokens: list[int]
    params: SolveParams


class Meter:
    """Engine observer: time-weighted live slots, slot-iterations, preemptions (engine threads call it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.busy = self.total = 0.0
        self.iterations = 0
        self.preempted = 0
        self.resumed = 0
        self.max_saved = 0

    def on_step(self, duration_s, live_slots, capacity, queue_depth) -> None:
        with self.lock:
            self.busy += duration_s * live_slots
            self.total += duration_s * capacity

    def on_evict(self, reason, count) -> None:
        pass

    def on_iterations(self, n) -> None:
        with self.lock:
            self.iterations += n

    def on_finished(self, result, job) -> None:
        pass

    def on_preemption(self, preempted, resumed, saved_bytes, max_saved_bytes) -> None:
        with self.lock:
            self.preempted += preempted
            self.resumed += resumed
            self.max_saved = max(self.max_saved, saved_bytes)


@dataclass
class Models:
    sudoku: tuple
    maze: tuple
    pools: dict[str, list[list[int]]] = field(default_factory=dict)

    def engine(self, which: str, policy: str, meter: Meter | None = None) -> Engine:
        model, meta = self.sudoku if which == "sudoku" else self.maze
        config = EngineConfig(slots=preferred_slots(model), max_queue=1 << 16, max_budget=1 << 20, scheduler=policy)
        return Engine(model, config, task=task_for(meta), defaults=meta.get("inference"), observer=meter)


def load(args) -> Models:
    sudoku, maze = load_model(args.sudoku), load_model(args.maze)
    st, mt = task_for(sudoku[1]), task_for(maze[1])
    m = Models(sudoku, maze)
    m.pools["easy"] = [p.tolist() for f in ("easy50.csv", "printable30.csv") for p in st.read_set(DATA / f)[0]]
    m.pools["hard"] = [p.tolist() for p in st.read_set(DATA / "top95.csv")[0]]
    m.pools["verified"] = m.pools["hard"]
    m.pools["maze"] = [p.tolist() for p in mt.read_set(args.maze_data)[0]]
    return m


def params_for(cls: str, seed: int, verified_budget: int) -> SolveParams:
    if cls == "hard":
        return SolveParams(depth=256, breadth=4, aggregate="vote", seed=seed)
    if cls == "verified":
        return SolveParams(verify=True, breadth=16, budget=verified_budget, seed=seed)
    return SolveParams(seed=seed)


def run(models: Models, arrivals: list[Arrival], policy: str) -> dict:
    """Serve ``arrivals`` open-loop with ``policy``: per class latencies (s), throughput, utilisation, preemptions."""
    meter = Meter()
    engines = {"sudoku": models.engine("sudoku", policy, meter), "maze": models.engine("maze", policy)}
    for e in engines.values():
        e.start()
    done: list[tuple[str, float, float]] = []
    lock = threading.Lock()
    futures = []
    t0 = time.perf_counter()
    for a in arrivals:
        delay = t0 + a.at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        arrived = time.perf_counter()
        engine = engines["maze" if a.cls == "maze" else "sudoku"]
        f = engine.submit(Job(a.tokens, a.params))

        def finished(_f, cls=a.cls, arrived=arrived) -> None:
            with lock:
                done.append((cls, arrived, time.perf_counter()))

        f.add_done_callback(finished)
        futures.append(f)
    for f in futures:
        f.result()
    end = max(d for _, _, d in done)
    for e in engines.values():
        e.stop()
    latency = defaultdict(list)
    for cls, arrived, finished_at in done:
        latency[cls].append(finished_at - arrived)
    answers = [f.result().answer for f in futures]
    return {
        "latency": latency,
        "throughput": len(done) / (end - t0),
        "utilisation": meter.busy / meter.total if meter.total else 0.0,
        "preempted": meter.preempted,
        "resumed": meter.resumed,
        "max_saved": meter.max_saved,
        "answers": answers,
        "iterations": meter.iterations,
    }


def calibrate(models: Models, args) -> tuple[float, dict[str, float]]:
    """The Sudoku pool's slot-iterations per second when full (4 x slots hard puzzles at depth 64, all at
    once: the pool stays full), and each Sudoku class's mean demand in slot-iterations (a sample each)."""
    rnd = random.Random(args.seed + 1)
    engine = models.engine("sudoku", "fcfs")
    slots = engine.config.slots
    full = [Job(rnd.choice(models.pools["hard"]), SolveParams(depth=64, seed=k)) for k in range(4 * slots)]
    samples = {"easy": 32, "hard": 6, "verified": 2}
    jobs = {c: [Job(rnd.choice(models.pools[c]), params_for(c, k, args.verified_budget)) for k in range(n)]
            for c, n in samples.items()}  # fmt: skip
    futures = [engine.submit(j) for j in full]
    t0 = time.perf_counter()
    engine.start()
    spent = sum(sum(f.result().iterations) for f in futures)
    capacity = spent / (time.perf_counter() - t0)
    demand = {c: float(np.mean([sum(engine.submit(j).result().iterations) for j in js])) for c, js in jobs.items()}
    engine.stop()
    demand["maze"] = 0.0  # the maze engine has its own pool; its work is not counted in the Sudoku capacity
    return capacity, demand


def arrivals_for(models: Models, args, load: float, capacity: float, demand: dict[str, float]) -> list[Arrival]:
    rnd = random.Random(args.seed)
    mix = dict(zip(CLASSES, (args.mix_easy, args.mix_hard, args.mix_verified, args.mix_maze), strict=True))
    mean = sum(mix[c] * demand[c] for c in CLASSES)
    rate = load * capacity / mean  # requests per second
    out, t, k = [], 0.0, 0
    while True:
        t += rnd.expovariate(rate)
        if t > args.duration:
            return out
        cls = rnd.choices(CLASSES, weights=[mix[c] for c in CLASSES])[0]
        out.append(Arrival(t, cls, rnd.choice(models.pools[cls]), params_for(cls, k, args.verified_budget)))
        k += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sudoku", type=Path, default=ROOT / "models" / "sudoku-small")
    ap.add_argument("--maze", type=Path, default=ROOT / "models" / "maze-small")
    ap.add_argument("--maze-data", type=Path, default=ROOT / "evalsets" / "maze" / "maze11-1000.jsonl")
    ap.add_argument("--loads", default="0.5,0.8,0.95", help="fractions of capacity")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of arrivals per load and policy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mix-easy", type=float, default=0.70)
    ap.add_argument("--mix-hard", type=float, default=0.22)
    ap.add_argument("--mix-verified", type=float, default=0.02)
    ap.add_argument("--mix-maze", type=float, default=0.06)
    ap.add_argument("--verified-budget", type=int, default=8192)
    ap.add_argument("--policies", default="fcfs,fair")
    ap.add_argument("--png", type=Path, default=Path("scheduling.png"))
    args = ap.parse_args()
    models = load(args)
    capacity, demand = calibrate(models, args)
    print(f"capacity: {capacity:.0f} slot-iterations/s (Sudoku pool full); mean demand per request (slot-iterations): "
          + ", ".join(f"{c} {demand[c]:.0f}" for c in CLASSES if c != "maze"))  # fmt: skip
    loads = [float(x) for x in args.loads.split(",")]
    policies = args.policies.split(",")
    table: dict[tuple[float, str], dict] = {}
    for load_ in loads:
        arrivals = arrivals_for(models, args, load_, capacity, demand)
        counts = {c: sum(a.cls == c for a in arrivals) for c in CLASSES}
        print(f"\nload {load_:.0%}: {len(arrivals)} arrivals in {args.duration:.0f} s ({counts})")
        for policy in policies:
            r = run(models, arrivals, policy)
            table[(load_, policy)] = r
            cells = "  ".join(
                f"{c} p50 {percentile(r['latency'][c], 50):6.2f}s p99 {percentile(r['latency'][c], 99):6.2f}s"
                for c in CLASSES
            )
            print(f"  {policy:5s} {cells}  throughput {r['throughput']:.2f}/s  utilisation {r['utilisation']:.0%}  "
                  f"preempted {r['preempted']} (max saved {r['max_saved'] / 1e6:.1f} MB)")  # fmt: skip
        if len(policies) == 2:
            a, b = (table[(load_, p)]["answers"] for p in policies)
            fixed = [i for i, x in enumerate(arrivals) if x.cls != "verified"]
            same = sum(a[i] == b[i] for i in fixed)
            print(f"  same answers (fixed breadth): {same}/{len(fixed)}")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, cls in zip(axes, ("easy", "hard"), strict=True):
        for policy in policies:
            p99 = [percentile(table[(x, policy)]["latency"][cls], 99) for x in loads]
            ax.plot(loads, p99, marker="o", label=policy)
        ax.set_xlabel("load (fraction of capacity)")
        ax.set_ylabel("p99 latency (s)")
        ax.set_yscale("log")
        ax.set_title(f"{cls} puzzles")
        ax.legend()
    fig.tight_layout()
    fig.savefig(args.png, dpi=120)
    print(f"\nwrote {args.png}")
    if {"fcfs", "fair"} <= set(policies):
        at = min(loads, key=lambda x: abs(x - 0.8))
        f, g = table[(at, "fcfs")], table[(at, "fair")]
        easy = percentile(f["latency"]["easy"], 99) / percentile(g["latency"]["easy"], 99)
        hard = percentile(g["latency"]["hard"], 99) / percentile(f["latency"]["hard"], 99)
        print(f"at {at:.0%} load: easy p99 fcfs/fair {easy:.1f}x; hard p99 fair/fcfs {hard:.2f}x; "
              f"throughput fair/fcfs {g['throughput'] / f['throughput']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
