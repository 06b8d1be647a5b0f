"""Which task a model folder declares: :func:`task_for` reads ``config.json``'s task block.

The one place that knows every task by name, so layers outside ``tasks/`` ask for "the task of this
model" and never import a particular one.
"""

from __future__ import annotations

from typing import Any

from eqr.model.tasks.base import Task
from eqr.model.tasks.grid import GridTask
from eqr.model.tasks.maze import MazeTask
from eqr.model.tasks.sudoku import SudokuTask

TASKS = ("sudoku", "maze", "grid")


def task_for(meta: dict[str, Any]) -> Task:
    """The task a model folder's metadata (or a model card's ``task_spec``) declares; none named is Sudoku
    (folders older than the task field)."""
    name = meta.get("task", "sudoku")
    grid = meta.get("grid") or {}
    if name == "sudoku":
        return SudokuTask()
    if name == "maze":
        rows, cols = grid.get("rows"), grid.get("cols")
        if not isinstance(rows, int) or rows != cols:
            raise ValueError(f"a maze model folder must give its square grid size as grid.rows/cols, got {grid!r}")
        return MazeTask(rows)
    if name == "grid":
        rows, cols, charset = grid.get("rows"), grid.get("cols"), grid.get("charset")
        if not (isinstance(rows, int) and isinstance(cols, int) and isinstance(charset, str)):
            raise ValueError(f"a grid model folder must give grid.rows, grid.cols and grid.charset, got {grid!r}")
        return GridTask(rows, cols, charset, grid.get("inputs"))
    raise ValueError(f"unknown task {name!r}; this version knows {', '.join(TASKS)}")
