"""Maze models per kind of maze, through the engine: plain 64 × 1 and verified mode, side by side.

For each model folder and each committed per-kind eval set (``evalsets/maze/maze11-<kind>-300.jsonl``:
perfect, braided, rooms, random; or, with ``--sets evalsets/maze/confirm``, the second draw of 1,000 a
kind that no model was chosen on), every maze is sent to an in-process engine twice: plain EqR (one
trajectory, depth 64) and verified mode at the model's defaults (its restart schedule and budget).
The table gives exact accuracy, iterations spent per maze (every trajectory's, restarts included),
answers verified but wrong (must be 0) and answers that changed a given (must be 0); a second table
gives plain 64 × 1 accuracy by path length over all kinds. One command:
``python benchmarks/maze_kinds.py --model models/maze-small runs/maze-small-ft --out docs/eval/maze-kinds.txt``.
"""

from __future__ import annotations

import argparse
from concurrent.futures import wait
from pathlib import Path

import numpy as np
import torch
from puzzle_sets import shown

from eqr.model.checkpoint import load_model
from eqr.model.tasks import maze
from eqr.model.tasks.maze import OPEN_ID, PATH_ID
from eqr.model.tasks.mazegen import KINDS
from eqr.model.tasks.registry import task_for
from eqr.server.engine import Engine, EngineConfig, Job, SolveParams

EVALSETS = Path(__file__).resolve().parents[1] / "evalsets" / "maze"
POLICIES = {"64 x 1": {"depth": 64, "breadth": 1}, "verified": {"verify": True}}
LENGTHS = ((2, 9), (10, 17), (18, 25), (26, 30))  # path-length buckets (BFS steps S to G)


def changes_a_given(puzzle: np.ndarray, answer: np.ndarray) -> bool:
    """An answer cell that differs from the maze where the maze fixes it (only open cells may become path)."""
    return bool(((answer != puzzle) & ~((puzzle == OPEN_ID) & (answer == PATH_ID))).any())


def measure(engine: Engine, puzzles: np.ndarray, solutions: np.ndarray, seed: int, params: dict) -> dict:
    """One policy over a set: accuracy, iterations, the two counts that must be 0, and which were right."""
    futures = [engine.submit(Job([int(t) for t in p], SolveParams(seed=seed, **params))) for p in puzzles]
    wait(futures)
    results = [f.result() for f in futures]
    right = [r.answer == s.tolist() for r, s in zip(results, solutions, strict=True)]
    return {
        "right": right,
        "exact": float(np.mean(right)),
        "iterations": float(np.mean([sum(r.iterations) for r in results])),
        "wrong_verified": sum(bool(r.verified) and not ok for r, ok in zip(results, right, strict=True)),
        "given_changed": sum(changes_a_given(p, np.asarray(r.answer)) for p, r in zip(puzzles, results, strict=True)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, nargs="+", required=True, help="maze model folders")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--sets", type=Path, default=EVALSETS, help="folder of maze11-<kind>-N.jsonl sets")
    ap.add_argument("--limit", type=int, help="first N mazes of each set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, help="also write the table here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sets = {}
    for kind in args.kinds.split(","):
        found = sorted(args.sets.glob(f"maze11-{kind}-*.jsonl"))
        if not found:
            raise SystemExit(f"--sets {args.sets}: no maze11-{kind}-N.jsonl there")
        sets[kind] = found[0]
    lines = [
        f"Per-kind maze eval sets ({', '.join(p.name for p in sets.values())}), seed {args.seed}"
        + (f", first {args.limit} of each" if args.limit else ""),
        "exact accuracy, iterations per maze; verified mode at each model's defaults (restart schedule, budget)",
        "",
        f"{'model':<32}{'kind':<10}{'64x1':>8}{'its':>7}{'verified':>10}{'its':>7}{'wrong+verified':>16}"
        f"{'given changed':>15}",
    ]
    print("\n".join(lines), flush=True)
    lengths = [""]  # then each model's settings, so tables from folders with other rules are not misread
    for folder in args.model:
        by_length: dict[tuple[int, int], list[bool]] = {b: [] for b in LENGTHS}
        model, meta = load_model(folder)
        label = f"{shown(folder):<31} "  # relative to the checkout; a space before the kind column, however long
        task = task_for(meta)
        config = EngineConfig(slots=16, max_queue=1 << 20, max_depth=64)
        engine = Engine(model, config, model_name=folder.name, task=task, defaults=meta.get("inference"))
        engine.start()
        d = engine.defaults
        rule = (
            f"{label}convergence rule window {d.window}, tol {d.tol}; verified: restart after"
            f" {d.verify_depth or 'the depth'}, budget {d.verify_budget or 'the default'}, {d.restart} restarts"
        )
        print(rule, flush=True)
        lengths.append(rule)
        try:
            for kind, path in sets.items():
                puzzles, solutions = task.read_set(path)
                puzzles, solutions = puzzles[: args.limit], solutions[: args.limit]
                plain, ver = (measure(engine, puzzles, solutions, args.seed, p) for p in POLICIES.values())
                for p, ok in zip(puzzles, plain["right"], strict=True):
                    n = maze.shortest_path_length(maze.from_tokens(p, task.size))
                    by_length[next(b for b in LENGTHS if b[0] <= n <= b[1])].append(ok)
                line = (
                    f"{label}{kind:<10}{plain['exact']:>8.1%}{plain['iterations']:>7.1f}"
                    f"{ver['exact']:>10.1%}{ver['iterations']:>7.1f}{ver['wrong_verified']:>16}"
                    f"{plain['given_changed'] + ver['given_changed']:>15}"
                )
                print(line, flush=True)
                lines.append(line)
        finally:
            engine.stop()
        buckets = "  ".join(f"{lo}-{hi}: {np.mean(v):.1%} ({len(v)})" for (lo, hi), v in by_length.items() if v)
        line = f"{label}64x1 by path length, all kinds: {buckets}"
        print(line, flush=True)
        lengths.append(line)
    if args.out:
        args.out.write_text("\n".join(lines + lengths) + "\n")


if __name__ == "__main__":
    main()
