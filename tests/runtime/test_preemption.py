"""Preemption with the bundled model: a trajectory that leaves its slot with its state saved and comes
back later (in another row, beside other trajectories) continues bit for bit as if it had never left:
the same latents, the same noise (its iteration count keys the counter-based noise), the same
convergence bookkeeping, so the same answer at the same iteration."""

from __future__ import annotations

from pathlib import Path

import torch

from eqr.model.checkpoint import load_model
from eqr.model.tasks.base import Task
from eqr.model.tasks.registry import task_for
from eqr.offline.solve import offline_engine, run_jobs
from eqr.server.engine import Job, SolveParams, SolveResult
from eqr.server.engine.request import Trajectory, TrajectoryStatus
from tests.server.engine.test_batching import Recorder

BUNDLED = Path(__file__).resolve().parents[2] / "models" / "sudoku-small"
HARD = "4.....8.5.3..........7......2.....6.....8.4......1.......6.3.7.5..2.....1.4......"  # top95 #1
EASY = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."


def _engine(slots: int, observer=None):
    model, meta = load_model(BUNDLED)
    engine = offline_engine(model, task_for(meta), meta, slots=slots)
    engine._observer = observer or engine._observer
    return engine


def test_saved_rows_resume_bit_for_bit():
    """Save two rows mid-run, run other work in the pool, restore them in other rows: every buffer
    matches an uninterrupted run after the same number of iterations."""
    model, meta = load_model(BUNDLED)
    task = task_for(meta)
    params = SolveParams(depth=40, breadth=2, noise=0.3, seed=11)
    tokens = [int(t) for t in task.parse(HARD).tokens]

    def run(interrupt: bool) -> dict[str, torch.Tensor]:
        engine = offline_engine(model, task, meta, slots=4)
        engine.submit(Job(tokens, params))
        for _ in range(5):
            engine.step()
        pool, runner = engine.pool, engine.runner
        owners = list(pool.owners)
        if interrupt:
            saved = pool.save([o.slot for o in owners])
            pool.release([o.slot for o in owners])
            filler = [type("Owner", (), {"slot": -1})() for _ in range(3)]
            pool.assign(filler, [1, 2, 3], torch.tensor([tokens] * 3).numpy(), [0.5] * 3, [99] * 3, [False] * 3)
            runner.run()  # other trajectories use the rows meanwhile
            pool.release([1, 0])  # two of them leave; the restored rows land behind the third
            pool.restore(owners, saved)
        rows = [o.slot for o in owners]
        for _ in range(10):
            runner.run()
        rows = [o.slot for o in owners]
        return {name: buf[rows].clone() for name, buf in pool._buffers.items()}

    plain, interrupted = run(False), run(True)
    for name, value in plain.items():
        assert torch.equal(value, interrupted[name]), name


def _preempted(hard: Job, steps: int) -> tuple[SolveResult, list[Trajectory]]:
    """``hard`` runs ``steps`` steps on 4 slots, then an easy request at a higher priority takes all of them
    and ``hard`` resumes once it is answered: its result, and its trajectories that were preempted."""
    recorder = Recorder()
    engine = _engine(4, recorder)
    future = engine.submit(hard)
    for _ in range(steps):
        engine.step()
    request = engine.scheduler.active[hard.id]
    easy = engine.submit(Job(_tokens(engine.task, EASY), SolveParams(breadth=4, seed=1, priority=10)))
    engine.step()
    preempted = [t for t in request.trajectories if t.status is TrajectoryStatus.PREEMPTED]
    while not (future.done() and easy.done()):
        engine.step()
    assert recorder.moves["preempted"] == 4 and recorder.moves["resumed"] == 4
    return future.result(), preempted


def _tokens(task: Task, puzzle: str) -> list[int]:
    return [int(t) for t in task.parse(puzzle).tokens]


def test_preempted_requests_answer_as_uninterrupted():
    """A seeded hard request, preempted by an easy one arriving at a higher priority and resumed, returns
    what it returns alone: answer, iterations per trajectory, convergence score."""
    params = SolveParams(depth=64, breadth=4, seed=3, aggregate="vote")
    alone = _engine(4)
    hard = Job(_tokens(alone.task, HARD), params)
    (reference,) = run_jobs(alone, [hard])
    got, _ = _preempted(Job(hard.tokens, params), 7)
    assert (got.answer, got.iterations, got.iterations_to_convergence, got.convergence_score) == (
        reference.answer,
        reference.iterations,
        reference.iterations_to_convergence,
        reference.convergence_score,
    )


def test_a_preempted_renoise_restart_resumes_bit_for_bit():
    """Verified mode's renoise restarts (each started from a failed trajectory's latents), preempted a few
    iterations in and resumed, give what the request gives alone."""
    params = SolveParams(depth=8, breadth=4, seed=0, verify=True, restart="renoise", budget=160)  # none verifies
    alone = _engine(4)
    hard = Job(_tokens(alone.task, HARD), params)
    (reference,) = run_jobs(alone, [hard])
    got, preempted = _preempted(Job(hard.tokens, params), 11)  # the breadth failed at 8: restarts 3 in
    assert len(preempted) == 4 and all(t.base is not None and t.attained == 3 for t in preempted)
    assert (got.answer, got.iterations, got.restarts, got.convergence_score) == (
        reference.answer,
        reference.iterations,
        reference.restarts,
        reference.convergence_score,
    )
