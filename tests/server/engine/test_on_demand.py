"""Breadth on demand: a request's breadth is a cap; trajectories start a few at a time and more join
only while the finished ones disagree, until a quorum agrees. Trajectory k has the seed it has under
fixed breadth, so the two modes run the same trajectories, on demand only fewer of them.

The frugal schedule is tested on the first-come scheduler, which never starts work ahead of need (the
fair one falls back to it under load); work-conserving breadth on idle slots: test_fair.py."""

from __future__ import annotations

import pytest

from eqr.kernels.rng import puzzle_key, trajectory_seed
from eqr.server.engine import InvalidParam, Job, SolveParams, Status
from tests.server.engine.fake import FakeModel, answered, puzzle, run_until_done, variant_answer

VARIANTS = 3


def variants_of(seed: int, n: int, first: int = 2) -> list[int]:
    key = puzzle_key(puzzle(first))
    return [trajectory_seed(seed, key, k) % VARIANTS for k in range(n)]


def test_agreeing_trajectories_stop_at_the_quorum(make_engine):
    seed = next(s for s in range(10_000) if len(set(variants_of(s, 2))) == 1)
    engine = make_engine(FakeModel(variants=VARIANTS), slots=8, scheduler="fcfs")
    future = engine.submit(Job(puzzle(2), SolveParams(seed=seed, breadth=16, breadth_mode="on_demand")))
    run_until_done(engine, [future])
    r = future.result()
    assert r.iterations == [5, 5] and r.agreement == 1.0 and r.status is Status.CONVERGED  # 2 of the cap of 16


def test_disagreement_adds_trajectories_until_a_quorum_agrees(make_engine):
    def wanted(v: list[int]) -> bool:  # the first two differ; the third agrees with one of them
        return v[0] != v[1] and v[2] in v[:2]

    seed = next(s for s in range(10_000) if wanted(variants_of(s, 3)))
    v = variants_of(seed, 3)
    engine = make_engine(FakeModel(variants=VARIANTS), slots=8, scheduler="fcfs")
    future = engine.submit(Job(puzzle(2), SolveParams(seed=seed, breadth=16, breadth_mode="on_demand")))
    run_until_done(engine, [future])
    r = future.result()
    assert r.iterations == [5, 5, 5] and r.answer == answered(variant_answer(v[2]), 2)
    # the third started when the first two had finished apart: it ran after them, not beside them
    assert engine.stats().steps == 10


def test_the_cap_still_holds_and_fixed_breadth_is_unchanged(make_engine):
    seed = next(s for s in range(10_000) if len(set(variants_of(s, 3))) == 3)
    engine = make_engine(FakeModel(variants=VARIANTS), slots=8)
    capped = engine.submit(Job(puzzle(2), SolveParams(seed=seed, breadth=3, breadth_mode="on_demand")))
    fixed = engine.submit(Job(puzzle(2), SolveParams(seed=seed, breadth=3)))
    run_until_done(engine, [capped, fixed])
    assert capped.result().iterations == [5, 5, 5]  # all three disagree: the cap ends it
    assert fixed.result().iterations == [5, 5, 5] and fixed.result().answer == capped.result().answer


def test_on_demand_is_a_model_default_and_is_validated(make_engine):
    engine = make_engine(FakeModel(variants=VARIANTS), inference={"breadth_mode": "on_demand"})
    assert engine.defaults.breadth_mode == "on_demand"
    with pytest.raises(InvalidParam, match="breadth_mode"):
        engine.submit(Job(puzzle(2), SolveParams(breadth_mode="lazy")))
