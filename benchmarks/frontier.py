"""Accuracy against compute for each policy the engine offers, on one mixed set, through the engine itself.

The set mixes easy Sudoku (easy50), hard Sudoku (top95), 17-clue Sudoku (a royle17 sample) and 11×11
mazes (the held-out maze11-1000); each puzzle goes to the bundled model of its task, both served by
in-process engines (the continuous-batching scheduler, slot pools and steps the server runs). Every
policy solves every puzzle with the same request seed:

- fixed D × B with the vote and with the paper's most-converged rule (pure EqR, all B run);
- fixed D × B with a quorum (the siblings stop once Q agree);
- breadth on demand with cap B and quorum Q;
- verified mode with a budget N per puzzle.

Compute is iterations per puzzle: every trajectory's iterations summed, restarts included; it does not
drift with the machine's load. Prints one row per policy (exact per set, overall, mean iterations),
writes a PNG of the frontier, and ends with the compute ratio at which the best adaptive policy
matches the fixed D × B vote accuracy (within one point).

``python benchmarks/frontier.py`` (about 20 minutes on 2 CPU cores; ``--limit 20`` for a quick look).
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import wait
from pathlib import Path

import matplotlib
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
matplotlib.use("Agg")

import matplotlib.pyplot as plt
from puzzle_sets import BUNDLED, SHARED, shown

from eqr.model.bundled import BUNDLED_MODELS
from eqr.model.checkpoint import load_model
from eqr.model.tasks.registry import task_for
from eqr.server.engine import Engine, EngineConfig, Job, SolveParams

ROOT = Path(__file__).resolve().parents[1]
SUDOKU_SETS = ("easy50.csv", "top95.csv", "royle17-sample1000.csv")
MAZES = ROOT / "evalsets" / "maze" / "maze11-1000.jsonl"


def policies(depth: int, cap: int) -> list[tuple[str, bool, dict]]:
    """(name, adaptive, request parameters)."""
    fixed = [(f"fixed {depth} x 1", False, {"breadth": 1})]
    fixed += [(f"fixed {depth} x {b} vote", False, {"breadth": b, "aggregate": "vote"}) for b in sorted({4, cap})]
    fixed += [(f"fixed {depth} x {cap} converged", False, {"breadth": cap, "aggregate": "converged"})]
    adaptive = [(f"fixed {depth} x {cap} quorum 3", True, {"breadth": cap, "aggregate": "vote", "quorum": 3})]
    adaptive += [
        (f"on demand <= {cap}, quorum {q}", True, {"breadth": cap, "breadth_mode": "on_demand", "quorum": q})
        for q in (2, 3)
    ]
    # verified mode keeps each model's restart schedule (its verify_depth) rather than running to depth
    adaptive += [
        (f"verified, budget {n}", True, {"verify": True, "budget": n, "depth": None}) for n in (16 * depth, 32 * depth)
    ]
    return fixed + adaptive


def load_sets(limit: int | None, royle: int) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
    """(set name, model index, puzzles, solutions): Sudoku sets for model 0, mazes for model 1."""
    sudoku = task_for({"task": "sudoku"})
    sets = []
    for name in SUDOKU_SETS:
        path = SHARED / name if (SHARED / name).exists() else BUNDLED / name
        if not path.exists():
            continue
        puzzles, solutions = sudoku.read_set(path)
        n = royle if name.startswith("royle") else limit
        sets.append((name.split(".")[0].split("-")[0], 0, puzzles[:n], solutions[:n]))
    maze = task_for({"task": "maze", "grid": {"rows": 11, "cols": 11}})
    puzzles, solutions = maze.read_set(MAZES)
    n = limit if limit is not None else 100
    sets.append(("maze11", 1, puzzles[:n], solutions[:n]))
    return sets


def run(engines: list[Engine], sets, params: dict, depth: int, seed: int) -> tuple[dict[str, float], float]:
    """Exact share per set and mean iterations per puzzle over all of them."""
    futures = []
    for name, model, puzzles, _ in sets:
        for p in puzzles:
            job = Job([int(t) for t in p], SolveParams(**{"depth": depth, "seed": seed, **params}))
            futures.append((name, engines[model].submit(job)))
    wait([f for _, f in futures])
    exact: dict[str, list[bool]] = {}
    iterations = []
    at = 0
    for name, _, _, solutions in sets:
        for solution in solutions:
            result = futures[at][1].result()
            exact.setdefault(name, []).append(result.answer == solution.tolist())
            iterations.append(sum(result.iterations))
            at += 1
    return {k: float(np.mean(v)) for k, v in exact.items()}, float(np.mean(iterations))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--cap", type=int, default=16, help="the widest breadth (fixed, and on demand's cap)")
    ap.add_argument("--limit", type=int, help="first N puzzles of each set (default: all; mazes: 100)")
    ap.add_argument("--royle", type=int, default=100, help="17-clue puzzles from the royle17 sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--slots", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "eval" / "frontier.png")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    royle = min(args.royle, args.limit) if args.limit is not None else args.royle
    sets = load_sets(args.limit, royle)
    engines = []
    for folder in BUNDLED_MODELS:
        model, meta = load_model(folder)
        config = EngineConfig(
            slots=args.slots, max_queue=1 << 20, max_depth=args.depth, max_breadth=args.cap, threads=args.threads
        )
        engine = Engine(model, config, model_name=folder.name, task=task_for(meta), defaults=meta.get("inference"))
        engine.start()
        engines.append(engine)
    sizes = ", ".join(f"{name} {len(p)}" for name, _, p, _ in sets)
    print(f"mixed set: {sizes}; depth {args.depth}, seed {args.seed}, {args.slots} slots per model")
    rows = []
    try:
        for name, adaptive, params in policies(args.depth, args.cap):
            t0 = time.perf_counter()
            exact, iterations = run(engines, sets, params, args.depth, args.seed)
            overall = float(np.mean([e for n, _, p, _ in sets for e in [exact[n]] * len(p)]))
            rows.append((name, adaptive, exact, overall, iterations))
            print(
                f"  {name}: {overall:.1%} at {iterations:.0f} iterations ({time.perf_counter() - t0:.0f} s)", flush=True
            )
    finally:
        for engine in engines:
            engine.stop()

    names = [n for n, _, _, _ in sets]
    header = f"{'policy':<32}" + "".join(f"{n:>9}" for n in names) + f"{'overall':>9}{'iterations':>12}"
    print()
    print(header)
    print("-" * len(header))
    for name, _, exact, overall, iterations in rows:
        print(f"{name:<32}" + "".join(f"{exact[n]:>9.1%}" for n in names) + f"{overall:>9.1%}{iterations:>12.0f}")
    plot(rows, args.out)
    print(f"wrote {shown(args.out)}")
    base = next(r for r in rows if r[0] == f"fixed {args.depth} x {args.cap} vote")
    matching = [r for r in rows if r[1] and r[3] >= base[3] - 0.01]
    if matching:
        best = min(matching, key=lambda r: r[4])
        print(
            f"best adaptive policy matching fixed {args.depth} x {args.cap} vote ({base[3]:.1%}): {best[0]} "
            f"({best[3]:.1%}) at {best[4] / base[4]:.2f}x its iterations"
        )
    else:
        print(f"no adaptive policy matches fixed {args.depth} x {args.cap} vote ({base[3]:.1%}) within one point")


def plot(rows, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, adaptive, _, overall, iterations in rows:
        ax.scatter(iterations, 100 * overall, marker="o" if adaptive else "s", color="C3" if adaptive else "C0")
        ax.annotate(name, (iterations, 100 * overall), fontsize=7, xytext=(4, 2), textcoords="offset points")
    points = sorted((r[4], 100 * r[3]) for r in rows)
    frontier, best = [], -1.0
    for x, y in points:
        if y > best:
            frontier.append((x, y))
            best = y
    ax.plot(*zip(*frontier, strict=True), "--", color="grey", linewidth=1, label="frontier")
    ax.set_xscale("log")
    ax.set_xlabel("mean iterations per puzzle (trajectories and restarts summed)")
    ax.set_ylabel("exact (%) on the mixed set")
    ax.set_title("accuracy against compute: fixed breadth (squares) and adaptive policies (circles)")
    ax.legend(loc="lower right")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    main()
