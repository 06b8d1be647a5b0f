"""Boards written as rows of characters: how mazes and generic grid tasks come in and go out.

A client sends either a list of row strings or one string with a row per line; the answer goes back
in the form it came in (see :class:`RowsForm`). Reading the rows, checking their shape and their
characters, and naming the cells at fault are the same for every such task, so they live here once.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from eqr.model.tasks.errors import PuzzleError

UNKNOWN_CHAR = "?"  # how a PAD token (never a valid answer cell) is shown


class RowsForm(str, enum.Enum):
    ROWS = "rows"  # a JSON list of row strings
    TEXT = "text"  # one string, a row per line


def cell_name(row: int, col: int) -> str:
    """Human name of a cell, e.g. ``r1c3`` (1-based, as the Sudoku cells are named)."""
    return f"r{row + 1}c{col + 1}"


def listing(items: list) -> str:
    """The first eight items, then how many more: error messages stay one readable line."""
    shown = ", ".join(str(x) for x in items[:8])
    return shown + (f" and {len(items) - 8} more" if len(items) > 8 else "")


def read_rows(board: object, what: str) -> tuple[list[str], RowsForm]:
    """The rows of ``board`` (a list of strings or one string with newlines) and the form it came in."""
    if isinstance(board, str):
        # one string with a row per line; blank lines before and after the grid are framing, not rows
        rows = board.replace("\r\n", "\n").split("\n")
        while rows and not rows[0]:
            rows.pop(0)
        while rows and not rows[-1]:
            rows.pop()
        form = RowsForm.TEXT
    elif isinstance(board, list):
        rows = board
        bad = [r + 1 for r, row in enumerate(rows) if not isinstance(row, str)]
        if bad:
            raise PuzzleError(f"{what} rows must be strings; row(s) {listing(bad)} are not")
        form = RowsForm.ROWS
    else:
        raise PuzzleError(f"{what} must be a list of row strings or one string with a row per line")
    if not rows:
        raise PuzzleError(f"{what} has no rows")
    return rows, form


def check_shape(rows: list[str], what: str, shape: tuple[int, int] | None = None) -> None:
    """Rows of equal length and, given ``shape`` (the model's board), exactly that many rows and columns."""
    width = len(rows[0])
    ragged = [r + 1 for r, row in enumerate(rows) if len(row) != width]
    if ragged:
        raise PuzzleError(
            f"rows must have equal length: row 1 has {width} cells but row(s) {listing(ragged)} differ "
            f"({', '.join(f'row {r} has {len(rows[r - 1])}' for r in ragged[:3])})"
        )
    if shape is not None and (len(rows), width) != shape:
        raise PuzzleError(f"{what} must be {shape[0]}x{shape[1]} for this model, got {len(rows)} rows of {width}")


def check_chars(rows: list[str], allowed: str, hint: str) -> None:
    """Every character in ``allowed``; otherwise the error names the cells and says what to use (``hint``)."""
    bad = [(r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch not in allowed]
    if bad:
        r, c = bad[0]
        raise PuzzleError(f"bad character {rows[r][c]!r} at {listing([cell_name(*rc) for rc in bad])}: {hint}", bad)


def to_ids(rows: list[str], charset: str) -> np.ndarray:
    """Checked rows to token ids [rows, cols]: 0 is PAD, ``charset[i]`` is ``i + 1``."""
    return np.array([[charset.index(ch) + 1 for ch in row] for row in rows], dtype=np.int8)


def to_rows(grid: np.ndarray, charset: str) -> list[str]:
    """Token ids [rows, cols] to row strings; PAD (and any id outside the charset) shows as ``?``."""
    chars = UNKNOWN_CHAR + charset
    return ["".join(chars[int(t)] if 0 <= int(t) < len(chars) else UNKNOWN_CHAR for t in row) for row in grid]


def read_docs(path: str | Path) -> Iterator[tuple[str, dict]]:
    """The JSON documents of a JSON-lines set with where each came from (``file:line``), for errors."""
    with open(path) as fh:
        for line_no, line in enumerate(fh, 1):
            if line.strip():
                yield f"{path}:{line_no}", json.loads(line)


def shown(rows: list[str], form: RowsForm) -> list[str] | str:
    """Rows in the form the client used."""
    return list(rows) if form is RowsForm.ROWS else "\n".join(rows)
