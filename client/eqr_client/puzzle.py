"""Puzzles as the SDK accepts them (Sudoku strings and grids, maze and grid rows) and a terminal rendering.

Only the *shape* is checked here, so a grid of tuples or numpy rows can be sent as JSON. Whether a
puzzle is acceptable (digits, conflicting givens, a maze's one start and goal) is the server's call,
made by the served model's task: it answers with the cells at fault
(:class:`~eqr_client.errors.PuzzleError`), and checking it twice would let the two drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

SIZE = 9

PuzzleInput = str | Sequence[Sequence[int]] | Sequence[str]
"""A puzzle in a form of the model's task.

Sudoku: an 81-character string (1-9 givens, '.' or '0' blanks; whitespace ignored) or 9 rows of 9
ints (0 = blank). Maze and grid tasks: a list of row strings (a maze: '#' walls, ' ' open, one 'S'
and one 'G'), or one string with a row per line. The answer comes back in the same form.
"""

Board = str | Sequence[str] | Sequence[Sequence[int]]
"""What :func:`format_board` draws: an answer or a streamed board (or a puzzle) in any of those forms."""


def puzzle_json(puzzle: PuzzleInput) -> str | list[str] | list[list[int]]:
    """``puzzle`` as the JSON value the server expects; a wrong *type* fails here, before any request."""
    if isinstance(puzzle, str):
        return puzzle
    if isinstance(puzzle, (bytes, bytearray)):
        raise TypeError("puzzle must be a str, a list of row strings or a 9×9 grid of ints, not bytes; decode it first")
    try:
        rows = list(puzzle)
    except TypeError:
        raise TypeError(f"puzzle must be a str, rows or a grid, got {type(puzzle).__name__}") from None
    texts = [isinstance(row, str) for row in rows]
    if rows and all(texts):
        return rows  # a maze or grid task's rows, sent as they are
    if any(texts):
        raise TypeError("puzzle rows must be all strings (maze, grid) or all sequences of ints (Sudoku), not a mix")
    try:
        return [[int(value) for value in row] for row in rows]
    except TypeError:
        raise TypeError(f"puzzle must be a str, rows or a grid, got rows of {type(rows[0]).__name__}") from None


def _is_sudoku(board: Board) -> bool:
    """Whether ``board`` has a Sudoku's shape: 81 cells on one line, or rows of ints (never row strings)."""
    if isinstance(board, str):
        return "\n" not in board.strip() and len("".join(board.split())) == SIZE * SIZE
    return bool(board) and not isinstance(board[0], str)


def format_board(board: Board) -> str:
    """A board for a terminal, in the shape of its task.

    Sudoku (an 81-character line, or 9 rows of ints): a 9×9 grid with box separators, blanks ('.',
    '0' or 0) as '.'. Maze and grid boards (row strings, or one string with a row per line): the rows
    as they are, one per line (a maze's path shows as its 'o' cells).
    """
    if not _is_sudoku(board):
        rows = board.strip("\n").split("\n") if isinstance(board, str) else [str(row) for row in board]
        return "\n".join(rows)
    cells = "".join(board.split()) if isinstance(board, str) else "".join(str(v) for row in board for v in row)
    if len(cells) != SIZE * SIZE:
        raise ValueError(f"a Sudoku board has {SIZE * SIZE} cells, got {len(cells)}")
    lines = []
    for r in range(SIZE):
        row = ["." if ch in ".0" else ch for ch in cells[r * SIZE : (r + 1) * SIZE]]
        lines.append(" | ".join(" ".join(row[c : c + 3]) for c in range(0, SIZE, 3)))
        if r in (2, 5):
            lines.append("------+-------+------")
    return "\n".join(lines)
