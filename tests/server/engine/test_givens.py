"""Givens are the answer's constraints: the engine reads every answer through the task's ``allowed``
before it verifies, aggregates, streams or responds, and the status says what happened.

A scripted maze model answers each puzzle with fixed logits: its first choice may break a given (G
written on the start, walls on open cells), its second choice is the solution. Then a network with
random weights, whose raw predictions break givens everywhere, runs mazes of every kind.
"""

from __future__ import annotations

import numpy as np
import torch

from eqr.model.config import EqRConfig
from eqr.model.network import EqRNetwork
from eqr.model.step import StepBatch, StepOutput, fresh_batch
from eqr.model.tasks import maze
from eqr.model.tasks.maze import MazeTask
from eqr.model.tasks.mazegen import KINDS, generate, kind_spec
from eqr.server.engine import Engine, EngineConfig, Job, SolveParams, Status
from tests.server.engine.fake import FakeModel, puzzle, run_until_done, variant_answer
from tests.server.engine.test_verified import GOOD, seed_where

CORRIDOR = ["#####", "#S  #", "### #", "#G  #", "#####"]  # one path, 6 steps
NO_WALLS = ["     ", " S G ", "     ", "     ", "     "]  # a straight line is the one shortest path


def keeps_the_givens(puzzle_tokens: np.ndarray, answer: np.ndarray) -> bool:
    """Walls, S and G as in the maze; an open cell is open or path."""
    p, a = np.asarray(puzzle_tokens), np.asarray(answer)
    fixed = p != maze.OPEN_ID
    return bool((a[fixed] == p[fixed]).all() and np.isin(a[~fixed], (maze.OPEN_ID, maze.PATH_ID)).all())


class ScriptedMaze:
    """Answers each maze (by its tokens) with the same logits every iteration: first choice ``raw``,
    second choice ``second``; it settles at once, so the rule confirms it after ``window`` iterations."""

    def __init__(self, size: int, boards: dict[bytes, tuple[np.ndarray, np.ndarray]]) -> None:
        self.cfg = EqRConfig(vocab_size=maze.VOCAB_SIZE, seq_len=size * size, hidden_size=8, num_heads=1,
                             expansion=1.0, multiple_of=8, L_layers=1, H_cycles=1, L_cycles=1)  # fmt: skip
        eye = torch.eye(maze.VOCAB_SIZE)
        self.logits = {
            k: 3 * eye[torch.as_tensor(raw, dtype=torch.long)] + eye[torch.as_tensor(second, dtype=torch.long)]
            for k, (raw, second) in boards.items()
        }

    def initial_state(self, seeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(seeds.shape[0], 1, 1), torch.zeros(seeds.shape[0], 1, 1)

    def iterate(self, batch: StepBatch) -> StepOutput:
        logits = torch.stack([self.logits[row.numpy().astype(np.int8).tobytes()] for row in batch.tokens])
        pred = logits.argmax(dim=2)
        zeros = torch.zeros(len(pred))
        return StepOutput(
            z_H=batch.z_H, z_L=batch.z_L, logits=logits, pred=pred, q_halt=zeros - 1, residual=zeros,
            pred_change=(pred != batch.prev_pred).sum(dim=1), logit_delta=zeros,
        )  # fmt: skip


def scripted(rows: list[str], raw_of) -> tuple[MazeTask, ScriptedMaze, np.ndarray, np.ndarray]:
    """A 5×5 maze, its solution, and a model whose first choice is ``raw_of(solution)``."""
    grid = maze.parse_maze(rows)
    solution = maze.solution(grid)
    tokens, answer = maze.to_tokens(grid), maze.to_tokens(solution)
    model = ScriptedMaze(5, {tokens.astype(np.int8).tobytes(): (raw_of(grid, solution).reshape(-1), answer)})
    return MazeTask(5), model, tokens, answer


def engine_for(model, task, **config) -> Engine:
    defaults = {"depth": 16, "noise": 0.0}
    # first-come: one restart at a time, as these tests count them (the fair scheduler starts them ahead)
    return Engine(model, EngineConfig(slots=4, window=2, scheduler="fcfs", **config), task=task, defaults=defaults)


def g_on_the_start(grid: np.ndarray, solution: np.ndarray) -> np.ndarray:
    return np.where(grid == maze.START_ID, maze.GOAL_ID, solution)


def test_verify_sees_the_answer_with_its_givens_a_model_that_writes_g_on_the_start():
    task, model, tokens, solution = scripted(CORRIDOR, g_on_the_start)
    engine = engine_for(model, task)
    try:
        verified = engine.submit(Job(tokens.tolist(), SolveParams(verify=True, budget=64)))
        plain = engine.submit(Job(tokens.tolist(), SolveParams()))
        run_until_done(engine, [verified, plain])
    finally:
        engine.stop()
    v, p = verified.result(), plain.result()
    # the first trajectory's answer is valid once its start cell is read as the maze says: no restart
    assert v.verified is True and v.restarts == 0 and v.status is Status.VERIFIED and v.valid
    assert v.answer == solution.tolist() and v.iterations == [3]
    assert p.answer == solution.tolist() and p.valid and p.status is Status.CONVERGED


def test_a_maze_without_walls_gets_no_walls_in_its_answer():
    def walls_everywhere_but_the_path(grid, solution):
        return np.where(solution == maze.OPEN_ID, maze.WALL_ID, solution)

    task, model, tokens, solution = scripted(NO_WALLS, walls_everywhere_but_the_path)
    engine = engine_for(model, task)
    try:
        future = engine.submit(Job(tokens.tolist(), SolveParams(stream_every=1)), on_event=(events := []).append)
        run_until_done(engine, [future])
    finally:
        engine.stop()
    r = future.result()
    assert r.answer == solution.tolist() and r.valid and maze.WALL_ID not in r.answer
    assert events and all(e.board == solution.tolist() for e in events)  # streamed boards keep them too


def test_a_verified_answer_cut_by_the_restart_schedule_reports_verified(make_engine):
    """Settled at iteration 2, stopped by the schedule's depth 3 before the rule (window 3) confirmed it."""
    seed = seed_where(0)
    engine = make_engine(FakeModel(variants=9), slots=4, scheduler="fcfs")
    cut = engine.submit(Job(puzzle(2), SolveParams(seed=seed, verify=True, depth=3, budget=30)))
    plain = engine.submit(Job(puzzle(2), SolveParams(seed=seed, depth=3)))
    run_until_done(engine, [cut, plain])
    r = cut.result()
    assert r.verified is True and r.iterations == [3] and r.iterations_to_convergence is None
    assert r.status is Status.VERIFIED and r.answer == variant_answer(GOOD)
    assert plain.result().status is Status.MAX_ITERATIONS and plain.result().verified is None


def test_no_answer_changes_a_given_on_mazes_of_every_kind():
    """Property: a network with random weights (raw predictions ignore the maze) on mazes of every
    kind, plain and verified, in a pool whose rows move as trajectories leave."""
    torch.manual_seed(0)
    cfg = EqRConfig(vocab_size=maze.VOCAB_SIZE, seq_len=121, hidden_size=16, num_heads=1, expansion=2.0,
                    multiple_of=16, L_layers=1, H_cycles=1, L_cycles=1, halt_max_steps=4)  # fmt: skip
    model = EqRNetwork(cfg).eval()
    mazes = np.concatenate([generate(6, kind_spec(kind, 11), seed=5)[0] for kind in KINDS])
    with torch.no_grad():
        raw = model.iterate(fresh_batch(model, torch.as_tensor(mazes, dtype=torch.long), torch.arange(len(mazes)), 0.5))
    raw = raw.pred.numpy()
    assert not all(keeps_the_givens(p, a) for p, a in zip(mazes, raw, strict=True))  # the raw output breaks them
    engine = Engine(model, EngineConfig(slots=5), task=MazeTask(11), defaults={"depth": 6, "noise": 0.5})
    try:
        plain, verified = {"breadth": 2}, {"verify": True, "depth": 3, "budget": 9}
        futures = [
            engine.submit(Job(p.tolist(), SolveParams(seed=k, **q)))
            for k, p in enumerate(mazes)
            for q in (plain, verified)
        ]
        run_until_done(engine, futures, max_steps=10_000)
    finally:
        engine.stop()
    results = [f.result() for f in futures]
    assert all(keeps_the_givens(mazes[k // 2], r.answer) for k, r in enumerate(results))
