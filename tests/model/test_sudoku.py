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


def test_conflict_mask_names_the_cells_at_fault():
    puzzle, solution = sudoku.parse_puzzle(PUZZLE), sudoku.parse_puzzle(SOLUTION)
    assert not sudoku.conflict_mask(puzzle, solution).any()
    wrong = list(solution)
    wrong[1], wrong[2] = wrong[2], wrong[1]  # r1c2 <-> r1c3: each now clashes in its column (and box)
    wrong[80] = 0  # a blank answer cell
    mask = sudoku.conflict_mask(puzzle, wrong)
    assert mask[1] and mask[2] and mask[80]
    # the peers holding the swapped digits in columns 2 and 3 are at fault too; the rest of row 1 is not
    col2 = [r * 9 + 1 for r in range(1, 9) if solution[r * 9 + 1] == wrong[1]]
    assert all(mask[i] for i in col2) and not mask[[0, 3, 4, 5, 6, 7, 8]].any()
    changed = list(solution)
    changed[0] = 5  # a given (4) changed: r1c1 and its peers that hold 5
    assert sudoku.conflict_mask(puzzle, changed)[0]


def test_task_conflicts_on_tokens_and_generic_tasks_say_none():
    from eqr.model.tasks.registry import task_for

    task = task_for({"task": "sudoku"})
    p, s = task.encode(PUZZLE), task.encode(SOLUTION)
    assert task.conflicts(p, s).shape == (81,) and not task.conflicts(p, s).any()
    bad = s.copy()
    bad[10] = bad[11]
    assert task.conflicts(p, bad)[[10, 11]].all()
    grid = task_for({"task": "grid", "grid": {"rows": 2, "cols": 3, "charset": ".ab", "inputs": ".a"}})
    assert grid.conflicts(grid.encode([".a.", "aa."]), np.array([3, 3, 1, 2, 2, 1])) is None
