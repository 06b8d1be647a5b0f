"""The task interface: a model folder's task turns puzzles into tokens and back, verifies, reads sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eqr.model.checkpoint import save_model
from eqr.model.config import EqRConfig
from eqr.model.network import EqRNetwork
from eqr.model.tasks import maze
from eqr.model.tasks.errors import PuzzleError
from eqr.model.tasks.grid import GridTask
from eqr.model.tasks.maze import MazeTask
from eqr.model.tasks.registry import task_for
from eqr.model.tasks.sudoku import SudokuTask
from eqr.server.cli import main

ROOT = Path(__file__).resolve().parents[2]
MAZES = ROOT / "evalsets" / "maze" / "maze11-1000.jsonl"
SUDOKU_SET = ROOT / "benchmarks" / "puzzles" / "easy50.csv"


def first_maze() -> dict:
    return json.loads(MAZES.read_text().splitlines()[0])


def test_a_model_folder_declares_its_task():
    assert isinstance(task_for({}), SudokuTask) and isinstance(task_for({"task": "sudoku"}), SudokuTask)
    t = task_for({"task": "maze", "grid": {"rows": 11, "cols": 11}})
    assert isinstance(t, MazeTask) and (t.seq_len, t.vocab_size) == (121, 6)
    with pytest.raises(ValueError, match=r"grid\.rows/cols"):
        task_for({"task": "maze"})
    with pytest.raises(ValueError, match="unknown task 'chess'"):
        task_for({"task": "chess"})


def test_sudoku_task_round_trips_and_verifies():
    task = SudokuTask()
    puzzles, solutions = task.read_set(SUDOKU_SET)
    assert puzzles.shape == solutions.shape == (len(SUDOKU_SET.read_text().split()), 81)
    text = "".join(str(d - 1) if d > 1 else "." for d in puzzles[0])
    assert np.array_equal(task.encode(text), puzzles[0])
    assert task.board(solutions[0]) == "".join(str(d - 1) for d in solutions[0])
    assert task.verify(puzzles[0], solutions[0]) and not task.verify(puzzles[0], puzzles[0])
    with pytest.raises(PuzzleError, match="r1c1"):
        task.encode("x" + text[1:])
    # either input form; the answer always comes back as 81 characters and a 9×9 grid
    grid = [[int(c) if c != "." else 0 for c in text[r * 9 : r * 9 + 9]] for r in range(9)]
    assert task.parse(grid).form == "grid" and task.parse(text).form == "string"
    assert np.array_equal(task.parse(grid).tokens, puzzles[0])
    fields = task.answer_fields(solutions[0], "grid")
    assert fields["answer"] == task.board(solutions[0]) and fields["grid"][0] == [int(c) for c in fields["answer"][:9]]
    assert task.spec() == {"task": "sudoku"} and task.render() == {"kind": "sudoku", "rows": 9, "cols": 9}
    assert task.encode(task.example()).shape == (81,)


def test_maze_task_round_trips_verifies_and_names_bad_cells():
    task, doc = MazeTask(11), first_maze()
    tokens = task.encode(doc["puzzle"])
    assert tokens.shape == (121,) and task.encode("\n".join(doc["puzzle"])).tolist() == tokens.tolist()
    answer = maze.to_tokens(maze.parse_maze(doc["puzzle"]))  # the givens only: no path marked
    solved = maze.to_tokens(maze.solution(maze.parse_maze(doc["puzzle"])))
    assert task.board(solved) == doc["solution"]  # the default form: rows
    assert task.board(solved, task.parse("\n".join(doc["puzzle"])).form) == "\n".join(doc["solution"])
    assert task.answer_fields(solved, "rows") == {"answer": doc["solution"]}
    assert task.verify(tokens, solved) and not task.verify(tokens, answer)
    assert task_for(task.spec()).seq_len == 121 and task.render()["charset"] == "# SGo"
    assert task.encode(task.example()).shape == (121,)
    with pytest.raises(PuzzleError, match="exactly one goal"):
        task.encode([row.replace("G", " ") for row in doc["puzzle"]])
    bad = list(doc["puzzle"])
    bad[1] = bad[1][:2] + "x" + bad[1][3:]
    with pytest.raises(PuzzleError, match="r2c3") as err:
        task.encode(bad)
    assert err.value.cells == [(1, 2)]
    with pytest.raises(PuzzleError, match="11"):
        task.encode(doc["puzzle"][:-1])  # 10 rows for an 11×11 model
    puzzles, solutions = task.read_set(MAZES)
    assert puzzles.shape == solutions.shape == (1000, 121)
    with pytest.raises(ValueError, match="11×11"):
        MazeTask(13).read_set(MAZES)


def test_eval_runs_a_maze_model_on_a_maze_set(tmp_path: Path, capsys: pytest.CaptureFixture):
    cfg = EqRConfig(
        vocab_size=6, seq_len=121, hidden_size=16, expansion=2, multiple_of=16, L_layers=1, H_cycles=1, L_cycles=1
    )
    folder = save_model(tmp_path / "maze-tiny", EqRNetwork(cfg), {"task": "maze", "grid": {"rows": 11, "cols": 11}})
    out = tmp_path / "maze.json"
    args = ["--depth", "2", "--breadth", "1,2", "--limit", "5", "--json", str(out)]
    assert main(["eval", "--model", str(folder), "--data", str(MAZES), *args]) == 0
    records = json.loads(out.read_text())
    assert {(r["data"], r["puzzles"]) for r in records} == {("maze11-1000.jsonl", 5)}
    assert all(0.0 <= r["exact_accuracy"] <= r["cell_accuracy"] <= 1.0 for r in records)
    assert "maze11-1000.jsonl" in capsys.readouterr().out


def test_a_grid_task_is_declared_not_coded(tmp_path: Path):
    """A folder that declares a charset and a shape gets a task: rows in, rows out, no rules (None)."""
    task = task_for({"task": "grid", "grid": {"rows": 2, "cols": 3, "charset": ".ab", "inputs": ".a"}})
    assert isinstance(task, GridTask) and (task.seq_len, task.vocab_size) == (6, 4)
    parsed = task.parse([".a.", "aa."])
    assert parsed.tokens.tolist() == [1, 2, 1, 2, 2, 1] and parsed.form == "rows"
    assert task.board(np.array([3, 3, 1, 0, 2, 2]), parsed.form) == ["bb.", "?aa"]  # PAD shows as '?'
    assert task.board(np.array([3, 3, 1, 0, 2, 2]), task.parse(".a.\naa.").form) == "bb.\n?aa"
    assert task.verify(parsed.tokens, parsed.tokens) is None
    assert task_for(task.spec()).spec() == task.spec()
    with pytest.raises(PuzzleError, match=r"'b' at r1c2: this model's puzzles use only '\.a'") as err:
        task.parse([".b.", "aa."])  # 'b' is an answer character, not an input
    assert err.value.cells == [(0, 1)]
    with pytest.raises(PuzzleError, match="must be 2x3 for this model, got 1 rows of 3"):
        task.parse(["..."])
    with pytest.raises(ValueError, match=r"grid\.rows, grid\.cols and grid\.charset"):
        task_for({"task": "grid", "grid": {"rows": 2}})
    with pytest.raises(ValueError, match="distinct characters"):
        task_for({"task": "grid", "grid": {"rows": 2, "cols": 2, "charset": "aa"}})
    labelled = tmp_path / "grid.jsonl"
    labelled.write_text(json.dumps({"puzzle": [".a.", "..."], "solution": ["bab", "bbb"]}) + "\n\n")
    puzzles, solutions = task.read_set(labelled)
    assert puzzles.tolist() == [[1, 2, 1, 1, 1, 1]] and solutions.tolist() == [[3, 2, 3, 3, 3, 3]]
    labelled.write_text(json.dumps({"puzzle": [".a.", "..."], "solution": ["ba", "bbb"]}) + "\n")
    with pytest.raises(ValueError, match=r"grid\.jsonl:1: rows must have equal length"):
        task.read_set(labelled)
