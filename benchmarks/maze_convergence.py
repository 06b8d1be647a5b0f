"""Adaptive compute on mazes: iterations to convergence against shortest-path length.

One trajectory per maze of a held-out set (the seed derivation of a server request with ``--seed``),
run by the serving engine in-process until the model's convergence rule holds or ``--depth`` is spent.
Prints, per path-length bucket, how many mazes, the share answered exactly, and the mean and median
iteration at which the answer appeared; writes a PNG of the same (and every maze as a dot). A model
that spends compute where it is needed spends it on the mazes it finds hard, whatever their length.

``python benchmarks/maze_convergence.py --model models/maze-small --data evalsets/maze/maze11-1000.jsonl``
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from eqr.model.checkpoint import load_model
from eqr.model.tasks.maze import from_tokens, shortest_path_length
from eqr.model.tasks.registry import task_for
from eqr.offline.solve import offline_engine, run_jobs
from eqr.server.engine import Job, SolveParams


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=Path("models/maze-small"))
    ap.add_argument("--data", type=Path, default=Path("evalsets/maze/maze11-1000.jsonl"))
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bucket", type=int, default=4, help="path lengths per row of the table")
    ap.add_argument("--out", type=Path, default=Path("docs/eval/maze11-convergence.png"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, help="first N mazes of the set")
    args = ap.parse_args()
    if args.limit is not None and args.limit < 1:
        ap.error("--limit must be at least 1")
    torch.set_num_threads(args.threads)

    model, meta = load_model(args.model)
    task = task_for(meta)
    engine = offline_engine(model, task, meta)  # the served engine: one trajectory a maze, seeded as eqr eval
    defaults = engine.defaults
    puzzles, solutions = task.read_set(args.data)
    puzzles, solutions = puzzles[: args.limit], solutions[: args.limit]
    lengths = [shortest_path_length(from_tokens(p, task.size)) for p in puzzles]
    params = SolveParams(depth=args.depth, breadth=1, seed=args.seed)
    results = run_jobs(engine, [Job([int(t) for t in p], params) for p in puzzles])
    exact = [r.answer == s.tolist() for r, s in zip(results, solutions, strict=True)]
    # where its answer settled; depth + 1: never converged
    at = [args.depth + 1 if r.iterations_to_convergence is None else r.iterations_to_convergence for r in results]

    print(f"{len(lengths)} mazes of {args.data.name}, {args.model.name}, depth {args.depth}, seed {args.seed}, "
          f"noise {defaults.noise:g}, rule window {defaults.window} tol {defaults.tol:g}")  # fmt: skip
    header = f"{'path length':>12}{'mazes':>7}{'exact':>8}{'converged':>11}{'mean it.':>10}{'median it.':>12}"
    print(header)
    print("-" * len(header))
    means = []
    for lo in range(min(lengths), max(lengths) + 1, args.bucket):
        rows = [i for i, n in enumerate(lengths) if lo <= n < lo + args.bucket]
        done = [at[i] for i in rows if at[i] <= args.depth]
        if not rows:
            continue
        mean = statistics.mean(done) if done else float("nan")
        means.append((lo + (args.bucket - 1) / 2, mean))
        print(
            f"{f'{lo}-{lo + args.bucket - 1}':>12}{len(rows):>7}{sum(exact[i] for i in rows) / len(rows):>8.0%}"
            f"{len(done) / len(rows):>11.0%}{mean:>10.1f}{statistics.median(done) if done else float('nan'):>12.1f}"
        )
    converged = [(n, a) for n, a in zip(lengths, at, strict=True) if a <= args.depth]
    try:
        corr = statistics.correlation([n for n, _ in converged], [a for _, a in converged])
    except statistics.StatisticsError:  # fewer than two converged mazes, or every one at the same iteration
        corr = float("nan")
    print(
        f"\nexact {sum(exact) / len(exact):.1%}; correlation of path length and iterations to convergence: {corr:.2f}"
    )

    fig, ax = plt.subplots(figsize=(7, 4.5))
    jitter = torch.rand(len(converged)).mul(0.6).sub(0.3).tolist()
    ax.scatter([n + j for (n, _), j in zip(converged, jitter, strict=True)], [a for _, a in converged],
               s=6, alpha=0.25, label="one maze (converged)")  # fmt: skip
    ax.plot([x for x, _ in means], [m for _, m in means], "o-", color="C3", label=f"mean per {args.bucket} lengths")
    ax.set_xlabel("shortest path length (steps)")
    ax.set_ylabel("iterations to convergence")
    # two lines: a set's file name is long enough to push one line past the figure's edges
    ax.set_title(f"{args.model.name} on {args.data.name}\niterations to convergence by path length (r = {corr:.2f})")
    ax.legend()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
