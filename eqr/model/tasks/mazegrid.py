"""The maze grid's alphabet, shortest-path search and set writer: what the task (``maze.py``) and the
generator (``mazegen.py``) share, so neither imports the other."""

from __future__ import annotations

import json
from pathlib import Path

import numba as nb
import numpy as np

from eqr.model.tasks import chargrid

CHARSET = "# SGo"
VOCAB_SIZE = 1 + len(CHARSET)
PAD_ID, WALL_ID, OPEN_ID, START_ID, GOAL_ID, PATH_ID = range(VOCAB_SIZE)

STEPS = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.int64)


@nb.njit(cache=True)
def bfs(passable, rows, cols, start, dist, count):
    """Breadth-first search over the flat ``passable`` mask from cell ``start``.

    Fills ``dist`` (steps from start, -1 = unreachable) and ``count`` (number of shortest paths,
    saturating at 2: all that uniqueness needs, and it cannot overflow).
    """
    dist[:] = -1
    count[:] = 0
    queue = np.empty(rows * cols, np.int64)
    dist[start] = 0
    count[start] = 1
    queue[0] = start
    head, tail = 0, 1
    while head < tail:
        v = queue[head]
        head += 1
        r, c = v // cols, v % cols
        for k in range(4):
            nr, nc = r + STEPS[k, 0], c + STEPS[k, 1]
            if nr < 0 or nr >= rows or nc < 0 or nc >= cols:
                continue
            u = nr * cols + nc
            if not passable[u]:
                continue
            if dist[u] == -1:
                dist[u] = dist[v] + 1
                count[u] = count[v]
                queue[tail] = u
                tail += 1
            elif dist[u] == dist[v] + 1:
                count[u] = min(2, count[u] + count[v])


def to_rows(grid: np.ndarray) -> list[str]:
    """Token ids [rows, cols] to row strings; PAD (never a valid answer cell) shows as ``?``."""
    return chargrid.to_rows(np.asarray(grid), CHARSET)


def write_jsonl(path: str | Path, puzzles: np.ndarray, solutions: np.ndarray, meta: list[dict]) -> None:
    """Write mazes as JSON lines ``{"puzzle": rows, "solution": rows, **meta}`` (readable, diffable)."""
    with open(path, "w") as fh:
        for p, s, m in zip(puzzles, solutions, meta, strict=True):
            fh.write(json.dumps({"puzzle": to_rows(p), "solution": to_rows(s), **m}) + "\n")
