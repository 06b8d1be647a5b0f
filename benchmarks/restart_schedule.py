"""Restart schedules for stuck trajectories in verified mode, through the engine: one command per model.

A trajectory that has not verified after k iterations makes way for a fresh one (verified mode with
depth k) within a budget of iterations per puzzle; the table compares k side by side with plain EqR
(one trajectory to the depth cap). Works for any model folder whose task can read the set (Sudoku CSV,
maze JSON lines): ``python benchmarks/restart_schedule.py --model models/maze-small
--data evalsets/maze/maze11-1000.jsonl --limit 300``. The Sudoku study over HTTP is
``benchmarks/verified.py --depth k`` (docs/eval/restart-schedule.txt).
"""

from __future__ import annotations

import argparse
from concurrent.futures import wait
from pathlib import Path

import numpy as np
import torch

from eqr.model.checkpoint import load_model
from eqr.model.tasks.registry import task_for
from eqr.server.engine import Engine, EngineConfig, Job, SolveParams


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--budget", type=int, default=256, help="iterations per puzzle in verified mode")
    ap.add_argument("--after", default="4,8,16,64", help="restart after this many iterations (k)")
    ap.add_argument("--depth", type=int, default=64, help="plain EqR's depth cap")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, meta = load_model(args.model)
    task = task_for(meta)
    puzzles, solutions = task.read_set(args.data)
    puzzles, solutions = puzzles[: args.limit], solutions[: args.limit]
    config = EngineConfig(slots=16, max_queue=1 << 20, max_depth=max(args.depth, *map(int, args.after.split(","))))
    engine = Engine(model, config, model_name=args.model.name, task=task, defaults=meta.get("inference"))
    engine.start()
    runs = [(f"plain {args.depth} x 1", {"depth": args.depth})]
    runs += [(f"verified, restart after {k}", {"depth": int(k), "verify": True, "budget": args.budget})
             for k in args.after.split(",")]  # fmt: skip
    print(f"{len(puzzles)} puzzles of {args.data.name}, {args.model.name}, budget {args.budget}, seed {args.seed}")
    print(f"{'policy':<28}{'exact':>8}{'iterations/puzzle':>19}{'restarts/puzzle':>17}")
    try:
        for name, params in runs:
            futures = [engine.submit(Job([int(t) for t in p], SolveParams(seed=args.seed, **params))) for p in puzzles]
            wait(futures)
            results = [f.result() for f in futures]
            exact = np.mean([r.answer == s.tolist() for r, s in zip(results, solutions, strict=True)])
            iterations = np.mean([sum(r.iterations) for r in results])
            restarts = np.mean([r.restarts for r in results])
            print(f"{name:<28}{exact:>8.1%}{iterations:>19.1f}{restarts:>17.2f}")
    finally:
        engine.stop()


if __name__ == "__main__":
    main()
