"""Maze codec: parsing errors that name the rows and cells, the token round trip, and verify."""

import numpy as np
import pytest

from eqr.model.tasks import maze, mazegen, mazegrid
from eqr.model.tasks.errors import PuzzleError
from eqr.model.tasks.maze import MazeTask

MAZE = [
    "#######",
    "#S    #",
    "# ### #",
    "# #   #",
    "# # ###",
    "#    G#",
    "#######",
]
# the one shortest path (8 steps): down column 2 to row 6, then right to G
ANSWER = [
    "#######",
    "#S    #",
    "#o### #",
    "#o#   #",
    "#o# ###",
    "#ooooG#",
    "#######",
]


def _with(rows: list[str], r: int, c: int, ch: str) -> list[str]:
    out = list(rows)
    out[r] = out[r][:c] + ch + out[r][c + 1 :]
    return out


def test_parse_accepts_rows_and_one_string_and_encodes_paper_ids():
    grid = maze.parse_maze(MAZE)
    assert grid.shape == (7, 7)
    assert np.array_equal(maze.parse_maze("\n" + "\n".join(MAZE) + "\n"), grid)
    assert np.array_equal(maze.parse_maze("\r\n".join(MAZE), size=7), grid)
    tokens = maze.to_tokens(grid)
    assert tokens.shape == (49,) and tokens[0] == 1 and tokens[8] == 3 and tokens[9] == 2
    assert tokens[7 * 5 + 5] == 4 and maze.VOCAB_SIZE == 6
    assert set(tokens.tolist()) == {1, 2, 3, 4}


@pytest.mark.parametrize(
    ("rows", "message", "cells"),
    [
        (_with(MAZE, 3, 4, "x"), "bad character 'x' at r4c5", [(3, 4)]),
        (_with(MAZE, 2, 1, "o"), "bad character 'o' at r3c2", [(2, 1)]),
        (_with(MAZE, 1, 1, " "), "exactly one start 'S', found 0", []),
        (_with(MAZE, 3, 5, "S"), "exactly one start 'S', found 2 at r2c2, r4c6", [(1, 1), (3, 5)]),
        (_with(MAZE, 5, 5, " "), "exactly one goal 'G', found 0", []),
        (_with(_with(MAZE, 4, 1, "#"), 3, 4, "#"), "no path", [(1, 1), (5, 5)]),
    ],
)
def test_parse_errors_name_the_cells_at_fault(rows, message, cells):
    with pytest.raises(PuzzleError) as info:
        maze.parse_maze(rows)
    assert message in str(info.value) and info.value.cells == cells
    assert isinstance(info.value, ValueError)


def test_parse_errors_name_the_rows_at_fault():
    ragged = list(MAZE)
    ragged[2] = "# ###"
    ragged[4] = "# # ####"
    with pytest.raises(PuzzleError, match=r"row\(s\) 3, 5 differ \(row 3 has 5, row 5 has 8\)"):
        maze.parse_maze(ragged)
    with pytest.raises(PuzzleError, match=r"row\(s\) 2 are not"):
        maze.parse_maze(["#S#", 7, "#G#"])
    with pytest.raises(PuzzleError, match="must be 9x9 for this model, got 7 rows of 7"):
        maze.parse_maze(MAZE, size=9)
    with pytest.raises(PuzzleError, match="no rows"):
        maze.parse_maze("\n\n")
    with pytest.raises(PuzzleError, match="list of row strings"):
        maze.parse_maze(42)


def test_solution_decodes_from_tokens_and_verifies():
    grid = maze.parse_maze(MAZE)
    assert maze.shortest_path_length(grid) == 8 and maze.shortest_path_count(grid) == 1
    answer = maze.solution(grid)
    assert maze.to_rows(answer) == ANSWER
    decoded = maze.from_tokens(maze.to_tokens(answer), cols=7)
    assert maze.to_string(decoded) == "\n".join(ANSWER)
    assert maze.verify(MAZE, ANSWER) and maze.verify(grid, decoded) and maze.verify(MAZE, "\n".join(ANSWER))


def test_verify_rejects_wrong_answers():
    longer = [  # a real S→G path through open cells, but 12 steps instead of 8
        "#######",
        "#Soooo#",
        "# ###o#",
        "# #ooo#",
        "# #o###",
        "#  ooG#",
        "#######",
    ]
    assert not maze.verify(MAZE, longer)
    assert not maze.verify(MAZE, _with(ANSWER, 3, 1, " "))  # broken path
    assert not maze.verify(MAZE, _with(ANSWER, 1, 2, "o"))  # one cell too many
    assert not maze.verify(MAZE, _with(ANSWER, 2, 2, " "))  # a wall removed
    assert not maze.verify(MAZE, _with(ANSWER, 3, 4, "#"))  # a wall added
    assert not maze.verify(MAZE, _with(ANSWER, 1, 1, "o"))  # S missing
    assert not maze.verify(MAZE, _with(ANSWER, 5, 5, "o"))  # G missing
    assert not maze.verify(MAZE, ANSWER[:-1])  # wrong shape
    assert not maze.verify(MAZE, _with(ANSWER, 3, 3, "x"))  # not a maze character
    assert not maze.verify(MAZE, MAZE)  # no path marked
    pad = maze.solution(maze.parse_maze(MAZE))  # a PAD token on the path decodes as '?'
    pad[2, 1] = mazegrid.PAD_ID
    assert maze.to_rows(pad)[2][1] == "?" and not maze.verify(MAZE, pad) and not maze.verify(MAZE, maze.to_rows(pad))


def test_verify_accepts_either_path_when_two_are_shortest():
    rows = ["#####", "#S  #", "#   #", "#  G#", "#####"]
    grid = maze.parse_maze(rows)
    assert maze.shortest_path_count(grid) == 2
    assert maze.verify(rows, ["#####", "#Soo#", "#  o#", "#  G#", "#####"])
    assert maze.verify(rows, ["#####", "#S  #", "#o  #", "#ooG#", "#####"])
    assert not maze.verify(rows, ["#####", "#So #", "#oo #", "#  G#", "#####"])
    with pytest.raises(PuzzleError, match="no unique shortest path"):
        maze.solution(grid)


def test_jsonl_round_trip_and_bad_solution(tmp_path):
    grid = maze.parse_maze(MAZE)
    path = tmp_path / "set.jsonl"
    mazegrid.write_jsonl(path, grid[None], maze.solution(grid)[None], [{"length": 8}])
    puzzles, solutions, meta = maze.read_jsonl(path)
    assert np.array_equal(puzzles[0], grid) and maze.to_rows(solutions[0]) == ANSWER and meta == [{"length": 8}]
    path.write_text(path.read_text().replace('"#oooo', '"#ooo '))
    with pytest.raises(ValueError, match=r"set\.jsonl:1: the solution does not mark a shortest path"):
        maze.read_jsonl(path)


def _faults(rows: list[str], answer: list[str]) -> set[tuple[int, int]]:
    grid = maze.parse_maze(rows)
    return {(int(r), int(c)) for r, c in np.argwhere(maze.conflict_mask(grid, maze._answer_grid(answer)))}


def test_conflicts_name_the_cells_that_break_the_path():
    assert _faults(MAZE, ANSWER) == set()
    # a gap: the two dangling ends and the open cells next to them (the unmarked one between them first)
    assert _faults(MAZE, _with(ANSWER, 3, 1, " ")) == {(2, 1), (3, 1), (4, 1), (5, 1)}
    # one mark too many, next to S: off every shortest path, and S now has two path neighbours
    assert {(1, 1), (1, 2)} <= _faults(MAZE, _with(ANSWER, 1, 2, "o"))
    assert (5, 3) not in _faults(MAZE, _with(ANSWER, 1, 2, "o"))  # the right part of the path is kept
    # a detour: every mark of the 12-step path off the shortest one is at fault
    longer = ["#######", "#Soooo#", "# ###o#", "# #ooo#", "# #o###", "#  ooG#", "#######"]
    assert {(1, 2), (1, 5), (3, 3), (4, 3)} <= _faults(MAZE, longer)


def test_conflicts_accept_any_shortest_path_and_find_a_loop_of_shortest_cells():
    rows = ["########", "#S     #", "#      #", "#      #", "#      #", "#     G#", "########"]
    straight = ["########", "#Sooooo#", "#     o#", "#     o#", "#     o#", "#     G#", "########"]
    down = ["########", "#S     #", "#o     #", "#o     #", "#o     #", "#oooooG#", "########"]
    assert maze.verify(rows, straight) and _faults(rows, straight) == set()
    assert maze.verify(rows, down) and _faults(rows, down) == set()
    # every mark lies on some shortest path and every path cell has two path neighbours, yet a 2×2 loop
    # of marks stands apart from the path: its cell nearest S has two neighbours farther from S
    loop = ["########", "#Sooooo#", "#     o#", "# oo  o#", "# oo  o#", "#     G#", "########"]
    assert not maze.verify(rows, loop) and _faults(rows, loop) >= {(3, 2)}
    assert not _faults(rows, loop) & {(1, 3), (2, 6)}  # the right path is kept


def test_conflicts_are_empty_exactly_when_the_answer_verifies_on_mazes_of_every_kind():
    rng = np.random.default_rng(3)
    for kind in mazegen.KINDS:
        puzzles, solutions, _, _ = mazegen.generate(20, mazegen.kind_spec(kind, 11), seed=11)
        for puzzle, solution in zip(puzzles, solutions, strict=True):
            grid, answer = maze.from_tokens(puzzle, 11), maze.from_tokens(solution, 11)
            assert not maze.conflict_mask(grid, answer).any()
            open_cells = np.argwhere(grid == maze.OPEN_ID)
            for flips in (1, 2, 3, 6):  # answers as a model writes them: givens kept, open cells marked or not
                wrong = answer.copy()
                for r, c in open_cells[rng.choice(len(open_cells), flips, replace=False)]:
                    wrong[r, c] = maze.OPEN_ID if wrong[r, c] == maze.PATH_ID else maze.PATH_ID
                mask = maze.conflict_mask(grid, wrong)
                assert mask.any() != maze.verify(grid, wrong)
                assert not mask[(grid == maze.WALL_ID)].any()  # a wall is never at fault when it stands


def test_maze_task_conflicts_work_on_tokens():
    task, grid = MazeTask(7), maze.parse_maze(MAZE)
    broken = maze.to_tokens(maze._answer_grid(_with(ANSWER, 3, 1, " ")))
    mask = task.conflicts(maze.to_tokens(grid), broken)
    assert mask.shape == (49,) and set(np.flatnonzero(mask)) == {2 * 7 + 1, 3 * 7 + 1, 4 * 7 + 1, 5 * 7 + 1}
