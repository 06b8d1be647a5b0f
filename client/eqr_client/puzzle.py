"""Puzzles as the SDK accepts them (a string or a 9×9 grid) and a terminal rendering of boards.

Only the *shape* is checked here, so a grid of tuples or numpy rows can be sent as JSON. Whether a
puzzle is acceptable (digits, conflicting givens) is the server's call: it answers with the cells at
fault (:class:`~eqr_client.errors.PuzzleError`), and checking it twice would let the two drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

SIZE = 9

PuzzleInput = str | Sequence[Sequence[int]]
"""An 81-character string (1-9 givens, '.' or '0' blanks; whitespace ignored) or 9 rows of 9 ints (0 = blank)."""


def puzzle_json(puzzle: PuzzleInput) -> str | list[list[int]]:
    """``puzzle`` as the JSON value the server expects; a wrong *type* fails here, before any request."""
    if isinstance(puzzle, str):
        return puzzle
    if isinstance(puzzle, (bytes, bytearray)):
        raise TypeError("puzzle must be a str or a 9×9 grid of ints, not bytes; decode it first")
    try:
        return [[int(value) for value in row] for row in puzzle]
    except TypeError:
        raise TypeError(f"puzzle must be a str or a 9×9 grid of ints, got {type(puzzle).__name__}") from None


def format_board(board: PuzzleInput) -> str:
    """A 9×9 board with box separators; blanks ('.', '0' or 0) print as '.'.

    Accepts an 81-character string (an answer, a streamed board) or a 9×9 grid.
    """
    cells = "".join(board.split()) if isinstance(board, str) else "".join(str(v) for row in board for v in row)
    if len(cells) != SIZE * SIZE:
        raise ValueError(f"a board has {SIZE * SIZE} cells, got {len(cells)}")
    rows = []
    for r in range(SIZE):
        row = ["." if ch in ".0" else ch for ch in cells[r * SIZE : (r + 1) * SIZE]]
        rows.append(" | ".join(" ".join(row[c : c + 3]) for c in range(0, SIZE, 3)))
        if r in (2, 5):
            rows.append("------+-------+------")
    return "\n".join(rows)
