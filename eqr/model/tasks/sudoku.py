"""Sudoku codec, validation and rule checker.

Token ids follow the paper's dataset (eqr.md §3): 0 = PAD, 1 = blank cell, 2..10 = digits 1..9.
Every puzzle enters the system through :func:`parse_puzzle`, so every error a user can make is
reported here once, with a message that names the position or the cells at fault.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from eqr.model.tasks.base import Parsed, Task
from eqr.model.tasks.errors import PuzzleError

SIZE = 9
CELLS = SIZE * SIZE
VOCAB_SIZE = 11
BLANK_ID = 1
DIGIT_OFFSET = 1  # token id = digit + 1
BLANK_CHARS = ".0"
EXAMPLE = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."

Grid = list[list[int]]


def cell_name(index: int) -> str:
    """Human name of a cell, e.g. ``r1c3`` (1-based, as Sudoku players write it)."""
    return f"r{index // SIZE + 1}c{index % SIZE + 1}"


def _rc(index: int) -> tuple[int, int]:
    return (index // SIZE, index % SIZE)


def _digits_from_string(text: str) -> list[int]:
    stripped = "".join(text.split())
    if len(stripped) != CELLS:
        raise PuzzleError(f"puzzle string must have {CELLS} cells, got {len(stripped)}")
    digits = []
    for i, ch in enumerate(stripped):
        if ch in BLANK_CHARS:
            digits.append(0)
        elif "1" <= ch <= "9":
            digits.append(int(ch))
        else:
            raise PuzzleError(
                f"bad character {ch!r} at position {i} ({cell_name(i)}): use 1-9 for givens and '.' or '0' for blanks",
                [_rc(i)],
            )
    return digits


def _digits_from_grid(grid: list) -> list[int]:
    if not isinstance(grid, list) or len(grid) != SIZE:
        raise PuzzleError(f"puzzle grid must be a list of {SIZE} rows")
    digits = []
    for r, row in enumerate(grid):
        if not isinstance(row, list) or len(row) != SIZE:
            raise PuzzleError(f"row {r + 1} of the grid must be a list of {SIZE} numbers")
        for c, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
                raise PuzzleError(
                    f"bad value {value!r} at r{r + 1}c{c + 1}: use 1-9 for givens and 0 for blanks", [(r, c)]
                )
            digits.append(value)
    return digits


def find_conflicts(digits: list[int] | np.ndarray) -> list[tuple[int, int]]:
    """Pairs of cell indices holding the same digit in one row, column or box."""
    conflicts = []
    for i in range(CELLS):
        if not digits[i]:
            continue
        for j in range(i + 1, CELLS):
            if digits[j] == digits[i] and _peers(i, j):
                conflicts.append((i, j))
    return conflicts


def _peers(i: int, j: int) -> bool:
    ri, ci, rj, cj = i // SIZE, i % SIZE, j // SIZE, j % SIZE
    return ri == rj or ci == cj or (ri // 3 == rj // 3 and ci // 3 == cj // 3)


# PEERS[i, j]: cells i != j share a row, column or box (one rule)
PEERS = np.array([[i != j and _peers(i, j) for j in range(CELLS)] for i in range(CELLS)])


def conflict_mask(puzzle: list[int] | np.ndarray, answer: list[int] | np.ndarray) -> np.ndarray:
    """Cells of ``answer`` (digits, 0 = blank) at fault: blank, changing a given of ``puzzle``, or holding
    the digit of a peer in its row, column or box. A bool mask [81]; all False for a valid solution."""
    a = np.asarray(answer, dtype=np.int64)
    p = np.asarray(puzzle, dtype=np.int64)
    clash = (PEERS & (a[:, None] == a[None, :])).any(axis=1)
    return (a == 0) | ((p != 0) & (p != a)) | (clash & (a != 0))


def parse_puzzle(puzzle: str | list) -> list[int]:
    """Parse an 81-char string or a 9x9 list into 81 digits (0 = blank); raise :class:`PuzzleError`."""
    if isinstance(puzzle, str):
        digits = _digits_from_string(puzzle)
    elif isinstance(puzzle, list):
        digits = _digits_from_grid(puzzle)
    else:
        raise PuzzleError("puzzle must be an 81-character string or a 9x9 list of lists")
    conflicts = find_conflicts(digits)
    if conflicts:
        i, j = conflicts[0]
        raise PuzzleError(
            f"conflicting givens: {cell_name(i)} and {cell_name(j)} both hold {digits[i]}",
            sorted({_rc(k) for pair in conflicts for k in pair}),
        )
    return digits


def to_tokens(digits: list[int] | np.ndarray) -> np.ndarray:
    """Digits (0 = blank) to model token ids."""
    return np.asarray(digits, dtype=np.int64) + DIGIT_OFFSET


def from_tokens(tokens: np.ndarray) -> list[int]:
    """Model output ids to digits; ids outside 2..10 (PAD/blank, invalid as an answer) become 0."""
    arr = np.asarray(tokens, dtype=np.int64) - DIGIT_OFFSET
    return [int(d) if 1 <= d <= 9 else 0 for d in arr]


def to_string(digits: list[int] | np.ndarray) -> str:
    return "".join(str(int(d)) if d else "." for d in digits)


def to_grid(digits: list[int] | np.ndarray) -> Grid:
    return [[int(digits[r * SIZE + c]) for c in range(SIZE)] for r in range(SIZE)]


def is_valid_solution(puzzle: list[int] | np.ndarray, answer: list[int] | np.ndarray) -> bool:
    """True when ``answer`` is a complete grid obeying the rules and keeping every given of ``puzzle``."""
    a = np.asarray(answer, dtype=np.int64).reshape(SIZE, SIZE)
    p = np.asarray(puzzle, dtype=np.int64).reshape(SIZE, SIZE)
    if ((p != 0) & (p != a)).any():
        return False
    full = np.arange(1, 10)
    boxes = a.reshape(3, 3, 3, 3).transpose(0, 2, 1, 3).reshape(SIZE, SIZE)
    return all((np.sort(group, axis=1) == full).all() for group in (a, a.T, boxes))


def read_csv(path: str) -> tuple[list[list[int]], list[list[int]]]:
    """Read a ``puzzle,solution`` CSV (no header) of the shared data sets."""
    puzzles, solutions = [], []
    with open(path) as fh:
        for line_no, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#") or line.startswith("puzzle"):
                continue
            parts = line.split(",")
            if len(parts) < 2:
                raise ValueError(f"{path}:{line_no}: expected 'puzzle,solution'")
            puzzles.append(parse_puzzle(parts[0]))
            solutions.append(_digits_from_string(parts[1]))
    return puzzles, solutions


def format_board(digits: list[int]) -> str:
    """A 9×9 grid with box separators for terminals; 0 (no digit) prints as '.'."""
    rows = []
    for r in range(SIZE):
        cells = [str(d) if d else "." for d in digits[r * SIZE : (r + 1) * SIZE]]
        rows.append(" | ".join(" ".join(cells[c : c + 3]) for c in range(0, SIZE, 3)))
        if r in (2, 5):
            rows.append("------+-------+------")
    return "\n".join(rows)


class SudokuTask(Task):
    """9×9 Sudoku: an 81-character string or a 9×9 list in; answers as 81 characters and a 9×9 grid."""

    name = "sudoku"
    vocab_size = VOCAB_SIZE
    seq_len = CELLS
    default_form = "string"

    def spec(self) -> dict[str, Any]:
        return {"task": self.name}

    def parse(self, puzzle: object) -> Parsed:
        form = "grid" if isinstance(puzzle, list) else "string"
        return Parsed(to_tokens(parse_puzzle(puzzle)), form)  # type: ignore[arg-type]

    def board(self, tokens: np.ndarray, form: str | None = None) -> str:
        # one board form whatever the puzzle's: the API has always streamed and answered 81 characters
        return to_string(from_tokens(tokens))

    def text(self, tokens: np.ndarray) -> str:
        return format_board(from_tokens(tokens))

    def answer_fields(self, tokens: np.ndarray, form: str | None = None) -> dict[str, Any]:
        digits = from_tokens(tokens)
        return {"answer": to_string(digits), "grid": to_grid(digits)}

    def verify(self, puzzle: np.ndarray, answer: np.ndarray) -> bool:
        return is_valid_solution(from_tokens(puzzle), from_tokens(answer))

    def conflicts(self, puzzle: np.ndarray, answer: np.ndarray) -> np.ndarray:
        return conflict_mask(from_tokens(puzzle), from_tokens(answer))

    def allowed(self, puzzle: np.ndarray) -> np.ndarray:
        puzzle = np.asarray(puzzle)[..., None]  # a clue stays; a blank takes a digit
        tokens = np.arange(VOCAB_SIZE)
        return np.where(puzzle > BLANK_ID, puzzle == tokens, tokens > BLANK_ID)

    def render(self) -> dict[str, Any]:
        return {"kind": "sudoku", "rows": SIZE, "cols": SIZE}

    def example(self) -> str:
        return EXAMPLE

    def read_set(self, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
        puzzles, solutions = read_csv(str(path))
        return to_tokens(np.asarray(puzzles)), to_tokens(np.asarray(solutions))
