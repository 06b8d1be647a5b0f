"""The SDK's puzzle forms and board rendering, without a server: what is sent, and how answers print."""

from __future__ import annotations

import pytest

from eqr_client import IterationEvent, SolveResult, format_board
from eqr_client._protocol import solve_call
from tests.live_server import MAZE

SUDOKU = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."
RESULT = {
    "id": "r1",
    "model": "m",
    "status": "converged",
    "iterations": [3],
    "iterations_to_convergence": 3,
    "agreement": 1.0,
    "convergence_score": 0.0,
    "timings": {"queued_ms": 0.1, "compute_ms": 1.0},
}


def test_puzzles_go_out_in_the_form_given():
    assert solve_call(SUDOKU, {}).body == {"puzzle": SUDOKU}
    grid = [[int(ch) if ch != "." else 0 for ch in SUDOKU[r * 9 : r * 9 + 9]] for r in range(9)]
    assert solve_call(tuple(tuple(row) for row in grid), {}).body["puzzle"] == grid  # tuples become JSON lists
    assert solve_call(tuple(MAZE), {"model": "maze"}).body == {"puzzle": MAZE, "model": "maze"}  # rows as they are
    maze_text = "\n".join(MAZE)
    assert solve_call(maze_text, {}).body["puzzle"] == maze_text


@pytest.mark.parametrize(
    ("puzzle", "message"),
    [
        (b"S  G", "not bytes"),
        (42, "got int"),
        ([MAZE[0], [1, 2, 3, 4, 5]], "not a mix"),
        ([1, 2, 3], "rows of int"),
    ],
)
def test_a_puzzle_of_no_known_form_fails_before_sending(puzzle: object, message: str):
    with pytest.raises(TypeError, match=message):
        solve_call(puzzle, {})  # type: ignore[arg-type]


def test_a_sudoku_board_is_boxed():
    lines = format_board(SUDOKU).splitlines()
    assert len(lines) == 11 and lines[0] == ". . 3 | . 2 . | 6 . ." and lines[3] == "------+-------+------"
    assert format_board(" ".join(SUDOKU[i : i + 9] for i in range(0, 81, 9))) == format_board(SUDOKU)
    with pytest.raises(ValueError, match="81 cells, got 4"):
        format_board([[1, 2], [3, 4]])


def test_a_maze_board_is_its_rows():
    assert format_board(MAZE) == "\n".join(MAZE)
    assert format_board("\n" + "\n".join(MAZE) + "\n") == "\n".join(MAZE)  # framing newlines dropped
    assert format_board(["ab", "cd"]) == "ab\ncd"  # a generic grid's characters, whatever they are
    assert format_board("x" * 80) == "x" * 80  # one line that is not 81 cells: a one-row grid


def test_results_of_every_task_read_and_render():
    sudoku = SolveResult.model_validate({**RESULT, "answer": SUDOKU, "grid": [[0] * 9] * 9, "valid": True})
    assert sudoku.solved and sudoku.board().count("\n") == 10
    maze = SolveResult.model_validate({**RESULT, "answer": MAZE, "grid": None, "valid": False})
    assert maze.answer == MAZE and maze.grid is None and not maze.solved and maze.board() == "\n".join(MAZE)
    grid = SolveResult.model_validate({**RESULT, "answer": "ab\ncd", "grid": None, "valid": None})
    assert grid.valid is None and not grid.solved  # no rules checked: nothing vouches for the answer
    assert grid.board() == "ab\ncd"
    event = IterationEvent.model_validate(
        {"id": "r1", "iteration": 2, "board": MAZE, "residual": None, "live_trajectories": 1}
    )
    assert event.board == MAZE and format_board(event.board) == "\n".join(MAZE)
