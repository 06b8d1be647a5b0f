"""Sudoku codec, validation and rule checker."""

import numpy as np
import pytest

from eqr.model.tasks import sudoku
from eqr.model.tasks.sudoku import PuzzleError

PUZZLE = "4.....8.5.3..........7......2.....6.....8.4......1.......6.3.7.5..2.....1.4......"
SOLUTION = "417369825632158947958724316825437169791586432346912758289643571573291684164875293"


def test_string_and_grid_round_trip():
    digits = sudoku.parse_puzzle(PUZZLE)
    assert digits[0] == 4 and digits[1] == 0 and sum(1 for d in digits if d) == 17
    assert sudoku.to_string(digits) == PUZZLE
    grid = sudoku.to_grid(digits)
    assert len(grid) == 9 and grid[0][6] == 8
    assert sudoku.parse_puzzle(grid) == digits


def test_zero_is_blank_and_whitespace_ignored():
    text = PUZZLE.replace(".", "0")
    spaced = "\n".join(text[i : i + 9] for i in range(0, 81, 9))
    assert sudoku.parse_puzzle(spaced) == sudoku.parse_puzzle(PUZZLE)


def test_wrong_length_names_counts():
    with pytest.raises(PuzzleError, match="81 cells, got 80"):
        sudoku.parse_puzzle(PUZZLE[:-1])


def test_bad_character_names_position_and_cell():
    bad = PUZZLE[:10] + "x" + PUZZLE[11:]
    with pytest.raises(PuzzleError) as err:
        sudoku.parse_puzzle(bad)
    assert "position 10" in err.value.message and "r2c2" in err.value.message
    assert err.value.cells == [(1, 1)]


def test_conflicting_givens_name_both_cells():
    bad = "44" + PUZZLE[2:]
    with pytest.raises(PuzzleError) as err:
        sudoku.parse_puzzle(bad)
    assert "r1c1" in err.value.message and "r1c2" in err.value.message
    assert (0, 0) in err.value.cells and (0, 1) in err.value.cells


def test_grid_errors():
    with pytest.raises(PuzzleError, match="9 rows"):
        sudoku.parse_puzzle([[0] * 9] * 8)
    grid = [[0] * 9 for _ in range(9)]
    grid[2][3] = 10
    with pytest.raises(PuzzleError, match="r3c4") as err:
        sudoku.parse_puzzle(grid)
    assert err.value.cells == [(2, 3)]
    grid[2][3] = True
    with pytest.raises(PuzzleError):
        sudoku.parse_puzzle(grid)
    with pytest.raises(PuzzleError):
        sudoku.parse_puzzle(42)  # type: ignore[arg-type]


def test_tokens_round_trip_and_invalid_outputs():
    digits = sudoku.parse_puzzle(PUZZLE)
    tokens = sudoku.to_tokens(digits)
    assert tokens.min() >= 1 and tokens.max() <= 10 and tokens[1] == sudoku.BLANK_ID
    assert sudoku.from_tokens(tokens) == digits
    assert sudoku.from_tokens(np.array([0, 1, 2, 10])) == [0, 0, 1, 9]


def test_rule_checker():
    puzzle = sudoku.parse_puzzle(PUZZLE)
    answer = [int(c) for c in SOLUTION]
    assert sudoku.is_valid_solution(puzzle, answer)
    swapped = answer.copy()
    swapped[0], swapped[1] = swapped[1], swapped[0]
    assert not sudoku.is_valid_solution(puzzle, swapped)  # breaks a given and the columns
    blank = answer.copy()
    blank[5] = 0
    assert not sudoku.is_valid_solution(puzzle, blank)
    # a valid grid that ignores a given is not a valid completion
    relabelled = [{4: 1, 1: 4}.get(d, d) for d in answer]
    assert not sudoku.is_valid_solution(puzzle, relabelled)
    assert sudoku.is_valid_solution([0] * 81, relabelled)


def test_read_csv(tmp_path):
    path = tmp_path / "set.csv"
    path.write_text(f"{PUZZLE},{SOLUTION}\n\n")
    puzzles, solutions = sudoku.read_csv(str(path))
    assert len(puzzles) == 1 and sudoku.is_valid_solution(puzzles[0], solutions[0])
