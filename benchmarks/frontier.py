"""Accuracy against compute for each policy the engine offers, on one mixed set, through the engine itself.

The set mixes easy Sudoku (easy50), hard Sudoku (top95), 17-clue Sudoku (a royle17 sample) and 11×11
mazes (the held-out maze11-1000); each puzzle goes to the bundled model of its task, run by
``eqr eval``'s evaluation (the serving engine in-process). Every policy of ``eqr.offline.policies``
(the list ``eqr eval --policies`` runs) solves every puzzle with the same request seed:

- fixed D × B with the vote and with the paper's most-converged rule (pure EqR, all B run);
- the paper's protocol: 64 × 128, noise 0.5, learned halting, most-converged answer;
- fixed D × B with a quorum (the siblings stop once Q agree);
- breadth on demand with cap B and quorum Q;
- verified mode with a budget N per puzzle.

Compute is iterations per puzzle: every trajectory's iterations summed, restarts included; it does not
drift with the machine's load. Prints one row per policy (exact per set, overall, mean iterations),
writes a PNG of the frontier, and ends with the fraction of the paper protocol's iterations at which
the cheapest adaptive policy reaches its accuracy (within one puzzle).

``python benchmarks/frontier.py`` (hours on 2 CPU cores: the paper's 128 trajectories a puzzle dominate;
``--limit 20`` for a quick look, ``--paper-depth``/``--paper-breadth`` to shrink its row, which its
name then says).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from puzzle_sets import BUNDLED, SHARED, shown

from eqr.model.bundled import BUNDLED_MODELS
from eqr.model.checkpoint import load_model
from eqr.model.tasks.registry import task_for
from eqr.offline.evaluate import evaluate, plot_frontier
from eqr.offline.policies import Policy, named, paper, reference_line
from eqr.server.engine import SolveParams

ROOT = Path(__file__).resolve().parents[1]
SUDOKU_SETS = ("easy50.csv", "top95.csv", "royle17-sample1000.csv")
MAZES = ROOT / "evalsets" / "maze" / "maze11-1000.jsonl"


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


def overall(policy: Policy, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One policy's record over the whole mixed set, from its record per set (weighted by puzzles)."""
    n = sum(r["puzzles"] for r in records)
    exact = sum(r["exact_accuracy"] * r["puzzles"] for r in records) / n
    spent = sum(r["iterations_spent"] * r["puzzles"] for r in records) / n
    return {
        "data": "mixed set",
        "policy": policy.name,
        "adaptive": policy.adaptive,
        "exact_accuracy": exact,
        "iterations_spent": spent,
        "puzzles": n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--cap", type=int, default=16, help="the widest breadth (fixed, and on demand's cap)")
    ap.add_argument("--paper-depth", type=int, help="shrink the paper protocol's row (default: its 64)")
    ap.add_argument("--paper-breadth", type=int, help="shrink the paper protocol's row (default: its 128)")
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
    reference = paper(args.paper_depth, args.paper_breadth)
    policies = named(args.depth, args.cap, reference)
    models = [(folder.name, *load_model(folder)) for folder in BUNDLED_MODELS]
    sizes = ", ".join(f"{name} {len(p)}" for name, _, p, _ in sets)
    print(f"mixed set: {sizes}; depth {args.depth}, seed {args.seed}, {args.slots} slots")
    records = []
    for name, index, puzzles, solutions in sets:
        folder, model, meta = models[index]
        t0 = time.perf_counter()
        params = SolveParams(seed=args.seed)
        records += evaluate(
            model, task_for(meta), meta, puzzles, solutions, policies, params, args.slots, data=name, name=folder
        )
        print(f"  {name}: every policy ({time.perf_counter() - t0:.0f} s)", flush=True)
    rows = [overall(p, [r for r in records if r["policy"] == p.name]) for p in policies]

    names = [n for n, _, _, _ in sets]
    exact = {(r["data"], r["policy"]): r["exact_accuracy"] for r in records}
    header = f"{'policy':<32}" + "".join(f"{n:>9}" for n in names) + f"{'overall':>9}{'iterations':>12}"
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        per_set = "".join(f"{exact[n, row['policy']]:>9.1%}" for n in names)
        print(f"{row['policy']:<32}{per_set}{row['exact_accuracy']:>9.1%}{row['iterations_spent']:>12.0f}")
    print(f"wrote {shown(plot_frontier(rows, args.out))}")
    print(reference_line(rows, next(r for r in rows if r["policy"] == reference.name)))


if __name__ == "__main__":
    main()
