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
from eqr.model.tasks.base import MazeTask, SudokuTask, task_for
from eqr.model.tasks.sudoku import PuzzleError
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
    assert task.decode(solutions[0]) == [int(d) - 1 for d in solutions[0]]
    assert task.verify(puzzles[0], solutions[0]) and not task.verify(puzzles[0], puzzles[0])
    with pytest.raises(PuzzleError, match="r1c1"):
        task.encode("x" + text[1:])


def test_maze_task_round_trips_verifies_and_names_bad_cells():
    task, doc = MazeTask(11), first_maze()
    tokens = task.encode(doc["puzzle"])
    assert tokens.shape == (121,) and task.encode("\n".join(doc["puzzle"])).tolist() == tokens.tolist()
    answer = maze.to_tokens(maze.parse_maze(doc["puzzle"]))  # the givens only: no path marked
    solved = maze.to_tokens(maze.solution(maze.parse_maze(doc["puzzle"])))
    assert task.decode(solved) == doc["solution"]
    assert task.verify(tokens, solved) and not task.verify(tokens, answer)
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
