"""Each task says which tokens an answer cell may take given the puzzle; offline answers (evaluation,
``eqr solve``) are read under that constraint exactly as the server's are."""

from __future__ import annotations

import numpy as np
import torch

from eqr.model.config import EqRConfig
from eqr.model.evaluate import evaluate
from eqr.model.network import EqRNetwork
from eqr.model.solve import solve_offline
from eqr.model.tasks import maze, sudoku
from eqr.model.tasks.grid import GridTask
from eqr.model.tasks.maze import MazeTask
from eqr.model.tasks.mazegen import KINDS, generate, kind_spec
from eqr.model.tasks.sudoku import SudokuTask
from eqr.runtime.rollout import rollout


def test_a_maze_cell_may_keep_what_the_maze_gives_and_an_open_cell_may_become_path():
    grid = maze.parse_maze(["#S #", "#  G"])
    mask = MazeTask(4).allowed(maze.to_tokens(grid))
    allowed = [{int(t) for t in np.flatnonzero(cell)} for cell in mask]
    o, w = {maze.OPEN_ID, maze.PATH_ID}, {maze.WALL_ID}
    assert allowed == [w, {maze.START_ID}, o, w, w, o, o, {maze.GOAL_ID}]
    batch = MazeTask(4).allowed(np.stack([maze.to_tokens(grid)] * 3))
    assert batch.shape == (3, 8, maze.VOCAB_SIZE) and (batch == mask).all()


def test_a_sudoku_clue_stays_and_a_blank_takes_a_digit():
    tokens = sudoku.to_tokens(sudoku.parse_puzzle(sudoku.EXAMPLE))
    mask = SudokuTask().allowed(tokens)
    clue, blank = int(np.flatnonzero(tokens > sudoku.BLANK_ID)[0]), int(np.flatnonzero(tokens == sudoku.BLANK_ID)[0])
    assert np.flatnonzero(mask[clue]).tolist() == [tokens[clue]]
    assert np.flatnonzero(mask[blank]).tolist() == list(range(2, 11))  # digits 1-9, never PAD or blank


def test_a_generic_grid_has_no_givens():
    assert GridTask(2, 2, "ab").allowed(np.ones(4, dtype=np.int64)) is None


def _random_maze_model() -> EqRNetwork:
    torch.manual_seed(1)
    cfg = EqRConfig(vocab_size=maze.VOCAB_SIZE, seq_len=121, hidden_size=16, num_heads=1, expansion=2.0,
                    multiple_of=16, L_layers=1, H_cycles=1, L_cycles=1, halt_max_steps=4)  # fmt: skip
    return EqRNetwork(cfg).eval()


def _keeps(puzzle: np.ndarray, answer: np.ndarray) -> bool:
    fixed = puzzle != maze.OPEN_ID
    return bool((answer[fixed] == puzzle[fixed]).all() and np.isin(answer[~fixed], (maze.OPEN_ID, maze.PATH_ID)).all())


def test_offline_answers_keep_the_givens_on_mazes_of_every_kind():
    model, task = _random_maze_model(), MazeTask(11)
    mazes = np.concatenate([generate(5, kind_spec(kind, 11), seed=9)[0] for kind in KINDS]).astype(np.int64)
    tokens = torch.from_numpy(mazes)
    raw = rollout(model, tokens, range(len(mazes)), 4, 0.5, snapshots=[1, 4], batch_size=7)
    kept = rollout(model, tokens, range(len(mazes)), 4, 0.5, snapshots=[1, 4], batch_size=7, allowed=task.allowed)
    assert not all(_keeps(p, a) for p, a in zip(mazes, raw.preds[-1].numpy(), strict=True))
    assert all(_keeps(p, a) for depth in kept.preds.numpy() for p, a in zip(mazes, depth, strict=True))
    # where the raw prediction is allowed it stands: only broken givens are read differently
    allowed = task.allowed(mazes)
    ok = np.take_along_axis(allowed, raw.preds[-1].numpy()[..., None], axis=2)[..., 0]
    assert (kept.preds[-1].numpy()[ok] == raw.preds[-1].numpy()[ok]).all()
    solved = solve_offline(model, task, mazes[0], depth=4, breadth=2, noise=0.5)
    assert _keeps(mazes[0], np.asarray(solved.answer))
    # scored against the puzzles themselves: with the task, every given cell is right whatever the network says
    fixed = float((mazes != maze.OPEN_ID).mean())
    plain, constrained = (evaluate(model, mazes, mazes, [4], [1], ["converged"], 0.5, task=t)[0] for t in (None, task))
    assert plain["cell_accuracy"] < fixed <= constrained["cell_accuracy"]
