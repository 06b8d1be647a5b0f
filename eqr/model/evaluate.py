"""Offline evaluation over a grid of depth × breadth × aggregate rule.

The grid is answered by ONE rollout per data file: N·max(breadth) trajectories run to
max(depth) with a snapshot at every requested depth. Breadth b reads the first b trajectories
of each puzzle (trajectory j of a puzzle has seed :func:`eqr.kernels.rng.trajectory_seed`
(seed, puzzle, j), as in a server request for that puzzle seeded ``seed``, whatever the breadth), so every cell of the
grid is measured on the same trajectories and the whole grid costs what its most expensive cell
costs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eqr.kernels import rng
from eqr.model.aggregate import aggregate
from eqr.model.convergence import ConvergenceRule
from eqr.model.network import EqRNetwork
from eqr.model.tasks.base import Task
from eqr.runtime.rollout import rollout

RECORD_KEYS = (
    "data",
    "depth",
    "breadth",
    "aggregate",
    "exact_accuracy",
    "cell_accuracy",
    "mean_iterations",
    "p90_iterations",
    "mean_iterations_run",
    "puzzles",
)


def choose(preds: torch.Tensor, scores: torch.Tensor, breadth: int, rule: str) -> torch.Tensor:
    """Index of the chosen trajectory per puzzle among its first ``breadth``.

    ``preds`` [N, B, S] token ids, ``scores`` [N, B]; returns int64 [N]. Goes through
    :func:`eqr.model.aggregate.aggregate` so evaluation picks exactly what the server would.
    """
    answers = preds[:, :breadth].tolist()
    score_rows = scores[:, :breadth].tolist()
    picks = [
        aggregate(rule, [tuple(a) for a in traj], row).index for traj, row in zip(answers, score_rows, strict=True)
    ]
    return torch.tensor(picks, dtype=torch.long)


def accuracy(chosen: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(exact-board, cell) accuracy of [N, S] answers; exact counts the givens too (eqr.md §5.3)."""
    hit = chosen == labels
    return float(hit.all(dim=1).float().mean()), float(hit.float().mean())


def iteration_stats(converged_at: torch.Tensor, detected_at: torch.Tensor, depth: int) -> tuple[float, float, float]:
    """Mean and p90 iterations to convergence, and mean iterations run, within ``depth``.

    A trajectory counts as converged within ``depth`` when the rule fired by then (``detected_at``);
    its iterations to convergence are where its answer settled (``converged_at``), what it ran is
    ``detected_at``. One not converged within ``depth`` counts as ``depth`` for both: that is what
    it cost. p90 is the nearest-rank percentile, an iteration count that actually occurred.
    """
    done = detected_at <= depth
    its = torch.where(done, converged_at, depth).double().numpy()
    run = torch.where(done, detected_at, depth).double().numpy()
    return float(its.mean()), float(np.percentile(its, 90, method="inverted_cdf")), float(run.mean())


def grid_records(
    depths: Sequence[int],
    preds: torch.Tensor,
    scores: torch.Tensor,
    converged_at: torch.Tensor,
    detected_at: torch.Tensor,
    labels: torch.Tensor,
    breadths: Sequence[int],
    rules: Sequence[str],
    data: str = "",
) -> list[dict[str, Any]]:
    """Score every (depth, breadth, rule) cell from snapshots of a rollout.

    ``preds`` [len(depths), N, B, S], ``scores`` [len(depths), N, B], ``converged_at`` and
    ``detected_at`` [N, B] (see :class:`eqr.runtime.rollout.Rollout`; anything > depth if never),
    ``labels`` [N, S].
    """
    n = labels.shape[0]
    rows = torch.arange(n)
    records = []
    for k, depth in enumerate(depths):
        for breadth in breadths:
            for rule in rules:
                pick = choose(preds[k], scores[k], breadth, rule)
                exact, cell = accuracy(preds[k, rows, pick], labels)
                stats = iteration_stats(converged_at[rows, pick], detected_at[rows, pick], depth)
                values = (data, depth, breadth, rule, exact, cell, *stats, n)
                records.append(dict(zip(RECORD_KEYS, values, strict=True)))
    return records


def evaluate(
    model: EqRNetwork,
    puzzles: np.ndarray,
    solutions: np.ndarray,
    depths: Sequence[int],
    breadths: Sequence[int],
    rules: Sequence[str],
    noise: float,
    seed: int = 0,
    rule: ConvergenceRule | None = None,
    batch_size: int = 256,
    progress: bool = False,
    data: str = "",
    task: Task | None = None,
) -> list[dict[str, Any]]:
    """Evaluate puzzles and their solutions (token arrays [n, seq_len]) for the whole grid with one rollout;
    with ``task``, answers keep the givens as the server's do."""
    if len(puzzles) == 0:
        raise ValueError(f"{data or 'data'}: no puzzles to evaluate")
    if min(depths) < 1 or min(breadths) < 1:
        raise ValueError("depths and breadths must be at least 1")
    depths, breadths = sorted(set(depths)), sorted(set(breadths))
    n, width = len(puzzles), max(breadths)
    tokens = torch.from_numpy(np.asarray(puzzles, dtype=np.int64)).repeat_interleave(width, dim=0)
    labels = torch.from_numpy(np.asarray(solutions, dtype=np.int64))
    # trajectory j of each puzzle: as a request for that puzzle seeded `seed`
    seeds = [s for row in tokens[::width].numpy() for s in rng.trajectory_seeds(seed, rng.puzzle_key(row), width)]
    allowed = task.allowed if task is not None else None
    r = rollout(model, tokens, seeds, max(depths), noise, depths, rule, batch_size, progress, allowed=allowed)
    return grid_records(
        r.depths,
        r.preds.view(len(r.depths), n, width, -1),
        r.scores.view(len(r.depths), n, width),
        r.converged_at.view(n, width),
        r.detected_at.view(n, width),
        labels,
        breadths,
        rules,
        data,
    )


def evaluate_file(
    model: EqRNetwork, path: str | Path, task: Task, limit: int | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    """Evaluate the first ``limit`` puzzles of a labelled data set of ``task`` (Sudoku CSV, maze JSON
    lines); records carry the file's name (never its absolute path, which would name the machine)."""
    puzzles, solutions = task.read_set(path)
    if limit is not None:
        puzzles, solutions = puzzles[:limit], solutions[:limit]
    return evaluate(model, puzzles, solutions, data=Path(path).name, task=task, **kwargs)


def format_table(records: Sequence[dict[str, Any]]) -> str:
    """A fixed-width text table of records, one line per cell of the grid."""
    head = (
        f"{'data':<24} {'depth':>5} {'breadth':>7} {'aggregate':<9} "
        f"{'exact':>7} {'cell':>7} {'mean_it':>7} {'p90_it':>6} {'mean_run':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in records:
        lines.append(
            f"{Path(r['data']).name:<24} {r['depth']:>5} {r['breadth']:>7} {r['aggregate']:<9} "
            f"{r['exact_accuracy']:>7.3f} {r['cell_accuracy']:>7.3f} {r['mean_iterations']:>7.2f} "
            f"{r['p90_iterations']:>6.0f} {r['mean_iterations_run']:>8.2f}"
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
