"""Policies together, and the scheduler on its own: decisions as data, no model, no tensors.

The fake's trajectories settle at 2 + 3 (window) on variant ``seed % variants``; with 9 variants only
variant 7 keeps the puzzle's given, so only it verifies (see test_verified.py).
"""

from __future__ import annotations

import numpy as np

from eqr.model.tasks.sudoku import SudokuTask
from eqr.runtime.decisions import Leave, State
from eqr.server.engine import Job, SolveParams, Status
from eqr.server.engine.plan import ModelDefaults, resolve
from eqr.server.engine.request import Request
from eqr.server.engine.scheduler import Scheduler
from tests.server.engine.fake import FakeModel, answered, moving_board, puzzle, run_until_done, variant_answer
from tests.server.engine.test_verified import GOOD, VARIANTS, variants_of

CAPS = {"depth": 64, "breadth": 16, "budget": 65_536}


def test_verified_mode_with_breadth_on_demand_restarts_failed_answers_and_ends(make_engine):
    """Two start (the quorum), both fail the rules and disagree: each is followed by a restart, not by more
    breadth, and the first verified answer ends the request."""

    def wanted(v: list[int]) -> bool:
        return GOOD not in v[:2] and v[0] != v[1] and v[2] == GOOD

    seed = next(s for s in range(10_000) if wanted(variants_of(s, 4)))
    engine = make_engine(FakeModel(variants=VARIANTS), slots=8, scheduler="fcfs")
    params = SolveParams(seed=seed, breadth=8, breadth_mode="on_demand", verify=True, depth=64)
    future = engine.submit(Job(puzzle(2), params))
    run_until_done(engine, [future])
    r = future.result()
    assert r.verified is True and r.answer == answered(variant_answer(GOOD), 2) and r.status is Status.VERIFIED
    assert r.restarts == 2 and r.iterations == [5, 5, 5, 5] and engine.stats().steps == 10


def test_a_budget_split_with_a_quorum_ends_at_the_first_agreement(make_engine):
    """Budget 10 over breadth 4 caps the trajectories at 2, 2, 3, 3; the two capped at 2 answer the same
    board and make the quorum, so the other two stop there and the request spends 8 of its 10."""
    engine = make_engine(FakeModel(settle={9: 100}), slots=8)
    future = engine.submit(Job(puzzle(9), SolveParams(breadth=4, budget=10, quorum=2, depth=64)))
    run_until_done(engine, [future])
    r = future.result()
    assert r.iterations == [2, 2, 2, 2] and sum(r.iterations) == 8 and r.answer == answered(moving_board(2), 9)
    assert r.status is Status.MAX_ITERATIONS and r.agreement == 1.0


def _request(params: SolveParams, arrival: float) -> Request:
    task = SudokuTask()
    plan = resolve(params, ModelDefaults(depth=8), CAPS)
    return Request(Job(puzzle(1), params), plan, task=task, arrival=arrival, deadline=None, on_event=None)


def _state(k: int, answer: list[int]) -> State:
    return State(np.array([answer] * k), np.zeros(k), np.zeros(k), np.ones(k, dtype=np.int64))


def test_the_scheduler_decides_admissions_and_evictions_as_data():
    """Two slots: the higher priority request is admitted first; when its trajectories leave, the decision
    evicts them and admits the waiting one in the same step."""
    s = Scheduler(capacity=2, aging_per_s=0.0)
    low = _request(SolveParams(breadth=2, seed=1), arrival=0.0)
    high = _request(SolveParams(breadth=2, seed=2, priority=5), arrival=1.0)
    s.add(low)
    s.add(high)
    first = s.schedule(now=1.0)
    assert [a.owner.request for a in first.admit] == [high, high] and not first.evict
    assert [a.depth for a in first.admit] == [8, 8] and s.live == 2 and s.waiting == 2
    leaving = [(t, Leave.CONVERGED) for t in high.trajectories]
    assert s.observe(leaving) == high.trajectories  # the runner reads the leaving ones' state
    decision, progress = s.postprocess(leaving, _state(2, variant_answer(0)))
    assert list(decision.evict) == high.trajectories and not decision.read and progress == []
    assert [a.owner.request for a in decision.admit] == [low, low] and s.live == 2
    (ended,) = s.settle(decision, None)
    assert ended[0] is high and ended[1].answer == variant_answer(0) and ended[1].iterations == [1, 1]
