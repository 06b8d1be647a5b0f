"""Verified mode's ``restart: renoise`` with the bundled Sudoku model: a restart starts from the failed
trajectory's final latents with only the cells in conflict drawn fresh from its own seed; the same seed
gives the same answer and iterations; the state a restart starts from is freed whether or not it starts.
A preempted renoise restart resumes bit for bit: tests/runtime/test_preemption.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from eqr.model.checkpoint import load_model
from eqr.model.tasks.grid import GridTask
from eqr.model.tasks.registry import task_for
from eqr.offline.solve import offline_engine, run_jobs
from eqr.server.engine import InvalidParam, Job, SolveParams
from eqr.server.engine.plan import ModelDefaults
from eqr.server.engine.policies import RESTART_POLICIES
from eqr.server.engine.request import Trajectory
from eqr.server.jobs import RESTARTS

BUNDLED = Path(__file__).resolve().parents[3] / "models" / "sudoku-small"
HARD = "4.....8.5.3..........7......2.....6.....8.4......1.......6.3.7.5..2.....1.4......"  # top95 #1
EASY = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."


@pytest.fixture(scope="module")
def bundled():
    model, meta = load_model(BUNDLED)
    return model, task_for(meta), meta


def _engine(bundled, slots: int, observer=None, **inference):
    model, task, meta = bundled
    engine = offline_engine(model, task, {**meta, "inference": {**meta["inference"], **inference}}, slots=slots)
    engine._observer = observer or engine._observer
    return engine


def _tokens(task, puzzle: str = HARD) -> list[int]:
    return [int(t) for t in task.parse(puzzle).tokens]


def _hard(bundled, seed: int = 5, **params) -> Job:
    return Job(_tokens(bundled[1]), SolveParams(verify=True, depth=8, seed=seed, **params))


def test_a_renoise_restart_keeps_every_latent_but_those_of_the_cells_in_conflict(bundled):
    """The latents a renoise restart starts from, read in its slot before its first iteration: the failed
    trajectory's final latents, except the cells the task finds in conflict, which hold what a fresh start
    from the restart's seed would (and no other state carries over)."""
    engine = _engine(bundled, slots=1)
    model, task = engine.model, engine.task
    final: dict[Trajectory, tuple[torch.Tensor, torch.Tensor]] = {}  # each owner's latents after each iteration
    run = engine.runner.run

    def recording_run(*args):
        leaving = run(*args)
        for o in engine.pool.owners:
            final[o] = (engine.pool.z_H[o.slot].clone(), engine.pool.z_L[o.slot].clone())
        return leaving

    engine.runner.run = recording_run
    future = engine.submit(_hard(bundled, restart="renoise", budget=64))
    checked = 0
    while not future.done():
        engine.step()
        for u in engine.pool.owners:
            if u.base is None or u.ran(engine.scheduler.clock) != 0:
                continue
            t, row = u.base, u.slot
            cells = torch.as_tensor(u.renoise)
            assert np.array_equal(u.renoise, task.conflicts(np.asarray(_tokens(task)), np.asarray(t.answer)))
            assert (
                0 < int(cells.sum()) < cells.numel()
            )  # some cells kept, some drawn fresh: the check below means something
            fresh_H, fresh_L = model.initial_state(torch.tensor([u.seed]))
            for z, kept, fresh in (
                (engine.pool.z_H, final[t][0], fresh_H[0]),
                (engine.pool.z_L, final[t][1], fresh_L[0]),
            ):
                assert torch.equal(z[row][cells], fresh[cells])
                assert torch.equal(z[row][~cells], kept[~cells])
                assert not torch.equal(kept[cells], fresh[cells])
            assert int(engine.pool.tracker.steps[row]) == 0 and int(engine.pool.prev_pred[row].max()) == -1
            checked += 1
    assert checked >= 3  # every restart of the chain was checked (budget 64 at depth 8: up to 7)
    assert future.result().restarts == checked and not engine.runner.kept


def test_renoise_is_deterministic_and_not_a_full_restart(bundled):
    """The same seed gives the same answer and iterations; full restarts of the same seeds give others."""
    runs = {}
    for name, restart in (("a", "renoise"), ("b", "renoise"), ("full", "full")):
        engine = _engine(bundled, slots=1)  # one trajectory at a time: each restart follows a failed answer
        (runs[name],) = run_jobs(engine, [_hard(bundled, restart=restart, budget=160)])
        assert not engine.runner.kept  # the state kept for restarts that never started was freed
    a, b, full = runs["a"], runs["b"], runs["full"]
    assert a.restarts > 1
    assert (a.answer, a.iterations, a.convergence_score, a.status) == (
        b.answer,
        b.iterations,
        b.convergence_score,
        b.status,
    )
    assert (a.answer, a.iterations) != (full.answer, full.iterations)


def test_the_restart_policy_is_the_model_folders_default_and_a_bad_one_is_refused(bundled):
    engine = _engine(bundled, slots=1, restart="renoise")
    assert engine.defaults.restart == "renoise" and engine.plan(_hard(bundled)).restart == "renoise"
    assert engine.plan(_hard(bundled, restart="full")).restart == "full"  # the request's own wins
    assert _engine(bundled, slots=1).plan(_hard(bundled)).restart == "full"  # the default stays full
    with pytest.raises(InvalidParam, match="restart must be one of") as e:
        engine.submit(_hard(bundled, restart="local"))
    assert e.value.field == "restart"
    with pytest.raises(ValueError, match=r"inference\.restart"):
        ModelDefaults(depth=8, restart="local")
    # the names validation accepts (jobs.RESTARTS) are exactly the ones dispatch knows
    assert tuple(RESTART_POLICIES) == RESTARTS


def test_renoise_falls_back_to_a_full_restart_when_the_task_cannot_say_which_cells_are_wrong(bundled):
    failed = Trajectory(request=None, index=0, seed=1, answer=(1, 2, 1, 2))  # type: ignore[arg-type]
    grid = GridTask(2, 2, "ab")
    assert RESTART_POLICIES["renoise"].renoised(grid, np.zeros(4), failed) is None  # no rules to say
    sudoku, tokens = bundled[1], _tokens(bundled[1])
    wrong = Trajectory(request=None, index=0, seed=1, answer=tuple(tokens))  # type: ignore[arg-type]
    assert RESTART_POLICIES["renoise"].renoised(sudoku, np.asarray(tokens), wrong).sum() == HARD.count(
        "."
    )  # every blank
    assert RESTART_POLICIES["full"].renoised(sudoku, np.asarray(tokens), wrong) is None
