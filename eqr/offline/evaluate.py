"""Offline evaluation: accuracy and cost of any request on a labelled set, through the serving engine.

Every policy (``eqr.offline.policies``: a cell of the depth × breadth × aggregate grid, or a named
policy: verified mode, breadth on demand, a quorum, the paper's protocol...) sends each puzzle as a
request seeded ``seed`` to one in-process engine, exactly as a server would run it, so a row
measures what serving that request costs. All policies share one engine and run batched together.
Per policy:

- exact and cell accuracy of the answers (the givens count, eqr.md §5.3);
- iterations to convergence of the answer (mean and p90): where the chosen trajectory's answer
  settled; one that never converged counts its depth;
- iterations spent per puzzle: every trajectory's iterations summed, restarts included: its cost.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from eqr.model.network import EqRNetwork
from eqr.model.tasks.base import Task
from eqr.offline.policies import Policy
from eqr.offline.solve import offline_engine, run_jobs
from eqr.server.engine import Job, SolveParams, SolveResult

RECORD_KEYS = (
    "data",
    "policy",
    "adaptive",
    "depth",
    "breadth",
    "aggregate",
    "exact_accuracy",
    "cell_accuracy",
    "mean_iterations",
    "p90_iterations",
    "iterations_spent",
    "puzzles",
)


def accuracy(answers: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(exact-board, cell) accuracy of [N, S] answers; exact counts the givens too (eqr.md §5.3)."""
    hit = np.asarray(answers) == np.asarray(labels)
    return float(hit.all(axis=1).mean()), float(hit.mean())


def iteration_stats(results: Sequence[SolveResult], depth: int) -> tuple[float, float, float]:
    """Mean and p90 iterations to convergence of the answers (``depth`` for one that never converged),
    and the mean iterations spent per puzzle (all trajectories, restarts included). p90 is the
    nearest-rank percentile, an iteration count that actually occurred."""
    its = np.array([depth if r.iterations_to_convergence is None else r.iterations_to_convergence for r in results])
    spent = np.array([sum(r.iterations) for r in results], dtype=float)
    return float(its.mean()), float(np.percentile(its, 90, method="inverted_cdf")), float(spent.mean())


def cell_record(
    results: Sequence[SolveResult],
    labels: np.ndarray,
    policy: Policy,
    depth: int,
    breadth: int,
    rule: str,
    data: str = "",
) -> dict[str, Any]:
    """One policy's record from the results of its puzzles (in the order of ``labels`` [N, S]); ``depth``,
    ``breadth`` and ``rule``: what its requests resolved to (verified mode: the restart schedule's depth)."""
    exact, cell = accuracy(np.array([r.answer for r in results]), labels)
    values = (data, policy.name, policy.adaptive, depth, breadth, rule, exact, cell)
    return dict(zip(RECORD_KEYS, (*values, *iteration_stats(results, depth), len(results)), strict=True))


def evaluate(
    model: EqRNetwork,
    task: Task,
    meta: dict[str, Any],
    puzzles: np.ndarray,
    solutions: np.ndarray,
    policies: Sequence[Policy],
    params: SolveParams | None = None,
    batch_size: int = 256,
    progress: bool = False,
    data: str = "",
    name: str = "model",
) -> list[dict[str, Any]]:
    """Evaluate puzzles and their solutions (token arrays [n, seq_len]) under every policy, one record
    each; ``params``: the other request fields, under every policy's own (its seed seeds every puzzle);
    ``name``: the model's, as a server names it (messages name it). Raises InvalidParam for a policy the
    model refuses, before anything runs."""
    if len(puzzles) == 0:
        raise ValueError(f"{data or 'data'}: no puzzles to evaluate")
    base = params or SolveParams(seed=0)
    requests = [dataclasses.replace(base, **policy.fields) for policy in policies]
    jobs = [Job([int(t) for t in p], request) for request in requests for p in puzzles]
    # first-come: idle slots at the end of a run must not start breadth on demand or restarts ahead of
    # need, so the iterations spent per puzzle are the request's own
    engine = offline_engine(model, task, meta, batch_size, name=name, scheduler="fcfs")
    plans = [engine.plan(Job([int(t) for t in puzzles[0]], request)) for request in requests]
    bar = tqdm(total=len(jobs), desc=data or "eval", unit="puzzle", disable=not progress)
    results = run_jobs(engine, jobs, bar.update)
    bar.close()
    n = len(puzzles)
    return [
        cell_record(results[k * n : (k + 1) * n], solutions, policy, plan.depth, plan.breadth, plan.aggregate, data)
        for k, (policy, plan) in enumerate(zip(policies, plans, strict=True))
    ]


def evaluate_file(
    model: EqRNetwork, meta: dict[str, Any], path: str | Path, task: Task, limit: int | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    """Evaluate the first ``limit`` puzzles of a labelled data set of ``task`` (Sudoku CSV, maze JSON
    lines); records carry the file's name (never its absolute path, which would name the machine)."""
    puzzles, solutions = task.read_set(path)
    if limit is not None:
        puzzles, solutions = puzzles[:limit], solutions[:limit]
    return evaluate(model, task, meta, puzzles, solutions, data=Path(path).name, **kwargs)


def format_table(records: Sequence[dict[str, Any]]) -> str:
    """A fixed-width text table of records, one line per policy and data file. ``spent`` is the cost:
    mean iterations per puzzle, all trajectories and restarts summed."""
    width = max(len("policy"), *(len(r["policy"]) for r in records))
    head = (
        f"{'data':<24} {'policy':<{width}} {'depth':>5} {'breadth':>7} {'aggregate':<9} "
        f"{'exact':>7} {'cell':>7} {'mean_it':>7} {'p90_it':>6} {'spent':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in records:
        lines.append(
            f"{Path(r['data']).name:<24} {r['policy']:<{width}} {r['depth']:>5} {r['breadth']:>7} {r['aggregate']:<9} "
            f"{r['exact_accuracy']:>7.3f} {r['cell_accuracy']:>7.3f} {r['mean_iterations']:>7.2f} "
            f"{r['p90_iterations']:>6.0f} {r['iterations_spent']:>8.1f}"
        )
    return "\n".join(lines)


def write_json(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(list(records), indent=2) + "\n")
    return out


def plot_records(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Exact accuracy against depth (log2 axis): one panel per data file, colour = breadth, style = rule."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, renders with Agg

    files = list(dict.fromkeys(r["data"] for r in records))
    breadths = sorted({r["breadth"] for r in records})
    rules = list(dict.fromkeys(r["aggregate"] for r in records))
    styles = ["-", "--", ":", "-."]
    fig = Figure(figsize=(5 * len(files), 4), layout="constrained")
    axes = fig.subplots(1, len(files), squeeze=False)[0]
    for ax, name in zip(axes, files, strict=True):
        for bi, breadth in enumerate(breadths):
            for ri, rule in enumerate(rules):
                pts = sorted(
                    (r["depth"], r["exact_accuracy"])
                    for r in records
                    if r["data"] == name and r["breadth"] == breadth and r["aggregate"] == rule
                )
                if pts:
                    x, y = zip(*pts, strict=True)
                    ax.plot(x, y, styles[ri % len(styles)], color=f"C{bi}", marker="o", label=f"B={breadth} {rule}")
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("depth (iterations)")
        ax.set_ylabel("exact accuracy")
        ax.set_title(Path(name).name)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


def label_lines(points: Sequence[tuple[float, float]]) -> list[int]:
    """How many lines below its point each label goes, for points of (iterations, accuracy in %) on a log-x
    plot: policies of about the same cost and accuracy would print their names over each other, so each
    label near points already labelled goes one line lower per such point."""
    lines = []
    for i, (x, y) in enumerate(points):
        near = [abs(math.log10(max(x, 1) / max(px, 1))) < 0.3 and abs(y - py) < 3 for px, py in points[:i]]
        lines.append(sum(near))
    return lines


def plot_frontier(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Exact accuracy against iterations spent per puzzle (log axis), one point per policy, squares for
    fixed compute and circles for adaptive, with the frontier (the best accuracy at each cost) dashed;
    one panel per data file."""
    from matplotlib.figure import Figure

    files = list(dict.fromkeys(r["data"] for r in records))
    fig = Figure(figsize=(8 * len(files), 5), layout="constrained")
    axes = fig.subplots(1, len(files), squeeze=False)[0]
    for ax, name in zip(axes, files, strict=True):
        rows = [r for r in records if r["data"] == name]
        points = [(r["iterations_spent"], 100 * r["exact_accuracy"]) for r in rows]
        for r, (x, y), lines_down in zip(rows, points, label_lines(points), strict=True):
            ax.scatter(x, y, marker="o" if r["adaptive"] else "s", color="C3" if r["adaptive"] else "C0")
            ax.annotate(r["policy"], (x, y), fontsize=7, xytext=(4, 2 - 9 * lines_down), textcoords="offset points")
        frontier, best = [], -1.0
        for x, y in sorted(points):
            if y > best:
                frontier.append((x, y))
                best = y
        ax.plot(*zip(*frontier, strict=True), "--", color="grey", linewidth=1, label="frontier")
        ax.set_xscale("log")
        ax.set_xlabel("mean iterations per puzzle (trajectories and restarts summed)")
        ax.set_ylabel("exact (%)")
        ax.set_title(f"{Path(name).name}: fixed compute (squares), adaptive (circles)")
        ax.legend(loc="best")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out
