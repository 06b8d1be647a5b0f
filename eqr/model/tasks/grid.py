"""Generic grid tasks: a model folder that declares a charset and a shape is served without new code.

``config.json`` says ``"task": "grid"`` and ``"grid": {"rows": R, "cols": C, "charset": "..."}`` (and
optionally ``"inputs"``, the characters a puzzle may use; default: all of them). Token 0 is PAD and
``charset[i]`` is token ``i + 1``, the convention of the paper's data sets. Puzzles and answers are
rows of characters; there are no rules to check, so :meth:`GridTask.verify` answers ``None``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from eqr.model.tasks import chargrid
from eqr.model.tasks.base import Parsed, Task
from eqr.model.tasks.chargrid import RowsForm


class GridTask(Task):
    """Rows of characters in, rows of characters out, at one declared shape."""

    name = "grid"
    default_form = RowsForm.ROWS.value

    def __init__(self, rows: int, cols: int, charset: str, inputs: str | None = None) -> None:
        if rows < 1 or cols < 1:
            raise ValueError(f"a grid task needs at least one row and column, got {rows}x{cols}")
        if not charset or len(set(charset)) != len(charset) or "\n" in charset:
            raise ValueError(f"a grid task's charset must be distinct characters without newlines, got {charset!r}")
        if inputs is not None and not set(inputs) <= set(charset):
            raise ValueError(f"grid inputs {inputs!r} must be characters of the charset {charset!r}")
        self.rows, self.cols, self.charset = rows, cols, charset
        self.inputs = charset if inputs is None else inputs
        self.vocab_size = 1 + len(charset)
        self.seq_len = rows * cols

    def spec(self) -> dict[str, Any]:
        grid = {"rows": self.rows, "cols": self.cols, "charset": self.charset}
        return {"task": self.name, "grid": grid if self.inputs == self.charset else {**grid, "inputs": self.inputs}}

    def parse(self, puzzle: object) -> Parsed:
        rows, form = chargrid.read_rows(puzzle, "puzzle")
        chargrid.check_shape(rows, "puzzle", (self.rows, self.cols))
        chargrid.check_chars(rows, self.inputs, f"this model's puzzles use only {self.inputs!r}")
        return Parsed(chargrid.to_ids(rows, self.charset).reshape(-1).astype(np.int64), form.value)

    def board(self, tokens: np.ndarray, form: str | None = None) -> list[str] | str:
        rows = chargrid.to_rows(np.asarray(tokens).reshape(self.rows, self.cols), self.charset)
        return chargrid.shown(rows, RowsForm(form or self.default_form))

    def verify(self, puzzle: np.ndarray, answer: np.ndarray) -> None:
        return None

    def render(self) -> dict[str, Any]:
        return {"kind": "grid", "rows": self.rows, "cols": self.cols, "charset": self.charset}

    def example(self) -> list[str]:
        return [self.inputs[0] * self.cols for _ in range(self.rows)]

    def read_set(self, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
        """JSON lines of ``{"puzzle": rows, "solution": rows}``, the maze sets' layout."""
        puzzles, solutions = [], []
        for where, doc in chargrid.read_docs(path):
            try:
                puzzles.append(self.encode(doc["puzzle"]))
                rows, _ = chargrid.read_rows(doc["solution"], "solution")
                chargrid.check_shape(rows, "solution", (self.rows, self.cols))
                chargrid.check_chars(rows, self.charset, f"solutions use only {self.charset!r}")
            except (KeyError, ValueError) as exc:
                raise ValueError(f"{where}: {exc}") from exc
            solutions.append(chargrid.to_ids(rows, self.charset).reshape(-1).astype(np.int64))
        return np.stack(puzzles), np.stack(solutions)
