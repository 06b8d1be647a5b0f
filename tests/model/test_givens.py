"""Each task says which tokens an answer cell may take given the puzzle; the engine (which serves HTTP,
``eqr solve`` and ``eqr eval`` alike) reads every answer under that constraint."""

from __future__ import annotations

import numpy as np
import torch

from eqr.model.config import EqRConfig
from eqr.model.network import EqRNetwork
from eqr.model.step import fresh_batch
from eqr.model.tasks import maze, sudoku
from eqr.model.tasks.grid import GridTask
from eqr.model.tasks.maze import MazeTask
from eqr.model.tasks.mazegen import KINDS, generate, kind_spec
from eqr.model.tasks.sudoku import SudokuTask
from eqr.offline.solve import offline_engine, run_jobs
from eqr.server.jobs import Job, SolveParams


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


def test_answers_keep_the_givens_on_mazes_of_every_kind():
    model, task = _random_maze_model(), MazeTask(11)
    mazes = np.concatenate([generate(5, kind_spec(kind, 11), seed=9)[0] for kind in KINDS]).astype(np.int64)
    # the untrained network's raw predictions break givens...
    state = fresh_batch(model, torch.from_numpy(mazes), torch.arange(len(mazes)), 0.5)
    with torch.no_grad():
        for _ in range(4):
            o = model.iterate(state)
            state = state.advanced(o)
    assert not all(_keeps(p, a) for p, a in zip(mazes, state.prev_pred.numpy(), strict=True))
    # ...the engine's answers never do, in every trajectory it picks from
    engine = offline_engine(model, task, {}, slots=7)
    jobs = [Job(m.tolist(), SolveParams(depth=4, breadth=2, noise=0.5, seed=i)) for i, m in enumerate(mazes)]
    results = run_jobs(engine, jobs)
    assert all(_keeps(p, np.asarray(r.answer)) for p, r in zip(mazes, results, strict=True))
