"""Verified mode and budgets: restarts after a failed answer, an early end at a verified one, a cap
on all of a request's iterations. The fake's trajectories settle at 2 + 3 (window) on variant
``seed % 9`` of a valid grid; only variant 7 keeps the puzzle's given (a 2 in r1c1), so only it verifies.
The restart schedule is tested on the first-come scheduler, which never restarts ahead of a failed
answer (restarts ahead on idle slots: test_fair.py).
"""

from __future__ import annotations

import pytest

from eqr.kernels.rng import puzzle_key, trajectory_seed
from eqr.server.engine import Job, SolveParams, Status
from tests.server.engine.fake import FakeModel, puzzle, run_until_done, variant_answer

VARIANTS = 9
GOOD = 7  # (4 - 1 + 7) % 9 + 1 == 2: the variant whose r1c1 is the given 2


def variants_of(seed: int, n: int) -> list[int]:
    key = puzzle_key(puzzle(2))
    return [trajectory_seed(seed, key, k) % VARIANTS for k in range(n)]


def seed_where(good_at: int) -> int:
    """A request seed whose trajectory ``good_at`` is the first with the verifiable variant."""
    for seed in range(10_000):
        v = variants_of(seed, good_at + 1)
        if v[good_at] == GOOD and GOOD not in v[:good_at]:
            return seed
    raise AssertionError("no such seed")


def test_failed_answers_are_restarted_until_one_verifies(make_engine):
    seed = seed_where(3)
    engine = make_engine(FakeModel(variants=VARIANTS), slots=4, scheduler="fcfs")
    verified = engine.submit(Job(puzzle(2), SolveParams(seed=seed, verify=True)))
    plain = engine.submit(Job(puzzle(2), SolveParams(seed=seed)))
    run_until_done(engine, [verified, plain])
    v, p = verified.result(), plain.result()
    assert v.verified is True and v.restarts == 3 and v.valid and v.answer == variant_answer(GOOD)
    assert v.iterations == [5, 5, 5, 5] and v.status is Status.VERIFIED
    # without the flag: pure EqR, the first trajectory's answer, whatever it is
    assert p.verified is None and p.restarts == 0 and not p.valid and p.iterations == [5]


def test_a_verified_stream_names_each_trajectory_and_restart_and_shows_each_end(make_engine):
    """With verify and streaming, the events of a restart count from 1 again: each names its trajectory and
    restart, and each trajectory's last iteration comes with why it ended and whether it verified."""
    seed = seed_where(2)
    engine = make_engine(FakeModel(variants=VARIANTS), slots=4, scheduler="fcfs")  # one restart at a time
    events = []
    future = engine.submit(Job(puzzle(2), SolveParams(seed=seed, verify=True)), on_event=events.append)
    run_until_done(engine, [future])
    r = future.result()
    assert r.verified is True and r.restarts == 2 and r.iterations == [5, 5, 5]
    seen = [(e.trajectory, e.restart, e.iteration, e.ended, e.verified) for e in events]
    for k in range(3):  # trajectory k is the k-th restart; it runs 1..5 and its 5th is its last
        mine = [(it, ended, ok) for t, restart, it, ended, ok in seen if t == k and restart == k]
        assert [it for it, _, _ in mine] == [1, 2, 3, 4, 5], seen
        assert mine[-1][1:] == ("converged", k == 2) and all(ended is None for _, ended, _ in mine[:-1])
    assert len(seen) == 15
    assert events[-1].board == variant_answer(GOOD)  # the verified trajectory's last board: the answer


def test_the_first_verified_answer_ends_the_request(make_engine):
    seed = seed_where(1)
    engine = make_engine(FakeModel(variants=VARIANTS, settle={2: 2, 3: 50}), slots=8, scheduler="fcfs")
    verified = engine.submit(Job(puzzle(2), SolveParams(seed=seed, breadth=4, verify=True, aggregate="vote")))
    slow = engine.submit(Job(puzzle(3), SolveParams(breadth=2, verify=True, depth=64)))  # settles at 50
    steps = run_until_done(engine, [verified])
    r = verified.result()
    # all four settle together; the verified one wins even against a majority, and restarts queued
    # beside it never run
    assert r.verified and r.answer == variant_answer(GOOD) and r.restarts == 0 and r.iterations == [5] * 4
    assert steps == 5 and not slow.done()


def test_a_budget_bounds_the_restarts_and_the_answer_keeps_the_givens(make_engine):
    seed = next(s for s in range(10_000) if GOOD not in variants_of(s, 4))
    engine = make_engine(FakeModel(variants=VARIANTS), slots=4)
    future = engine.submit(Job(puzzle(2), SolveParams(seed=seed, verify=True, budget=12)))
    run_until_done(engine, [future])
    r = future.result()
    assert r.iterations == [5, 5, 2] and sum(r.iterations) == 12 and r.restarts == 2
    assert r.verified is False and not r.valid
    assert r.answer[0] == puzzle(2)[0]  # no verified answer: the best one, which keeps the given


def test_a_budget_splits_among_the_breadth_without_verify(make_engine):
    engine = make_engine(FakeModel(settle={9: 100}), slots=8)  # never settles: each runs its whole cap
    future = engine.submit(Job(puzzle(9), SolveParams(breadth=4, budget=10, depth=64)))
    run_until_done(engine, [future])
    r = future.result()
    assert r.iterations == [2, 2, 3, 3] and r.status is Status.MAX_ITERATIONS and r.restarts == 0


def test_verified_mode_is_a_model_default_and_budget_is_capped(make_engine):
    inference = {"verify": True, "verify_depth": 4, "verify_budget": 10}
    engine = make_engine(FakeModel(variants=VARIANTS, settle={2: 50}), inference=inference, scheduler="fcfs")
    assert engine.defaults.verify is True and engine.caps["budget"] == 65_536
    future = engine.submit(Job(puzzle(2)))  # the model's schedule: restart after 4, 10 iterations in all
    run_until_done(engine, [future])
    assert future.result().iterations == [4, 4, 2] and future.result().verified is False
    plain = make_engine(FakeModel(variants=VARIANTS, settle={2: 50}), inference={"verify": True}, scheduler="fcfs")
    seed = next(s for s in range(10_000) if GOOD not in variants_of(s, 40))
    future = plain.submit(Job(puzzle(2), SolveParams(seed=seed, depth=6)))  # no budget: 32 x depth x breadth
    run_until_done(plain, [future])
    assert sum(future.result().iterations) == 32 * 6 and future.result().verified is False
    from eqr.server.engine import InvalidParam

    with pytest.raises(InvalidParam, match="budget"):
        engine.submit(Job(puzzle(2), SolveParams(budget=0)))
    with pytest.raises(InvalidParam, match="verify"):
        engine.submit(Job(puzzle(2), SolveParams(verify="yes")))


def test_stuck_after_ends_the_request_when_one_wrong_answer_keeps_coming_back(make_engine):
    """With ``stuck_after: 3`` a request whose third failure of one wrong answer comes at trajectory k ends
    there (status stuck) rather than spending its budget; without it the budget runs out."""
    seed = next(s for s in range(10_000) if GOOD not in variants_of(s, 40))
    variants = variants_of(seed, 40)
    third = next(k for k in range(40) if variants[: k + 1].count(variants[k]) == 3)  # the first third repeat
    engine = make_engine(FakeModel(variants=VARIANTS), slots=4, scheduler="fcfs")  # one restart at a time
    params = {"seed": seed, "verify": True, "budget": 200}
    stuck = engine.submit(Job(puzzle(2), SolveParams(stuck_after=3, **params)))
    spent = engine.submit(Job(puzzle(2), SolveParams(**params)))
    run_until_done(engine, [stuck, spent])
    s, p = stuck.result(), spent.result()
    assert s.status is Status.STUCK and s.iterations == [5] * (third + 1) and s.restarts == third
    assert s.verified is False and s.answer[0] == puzzle(2)[0]  # the best-so-far answer, keeping the given
    assert p.status is not Status.STUCK and sum(p.iterations) == 200
    from eqr.server.engine import InvalidParam

    with pytest.raises(InvalidParam, match="needs verified mode") as e:
        engine.submit(Job(puzzle(2), SolveParams(stuck_after=3)))
    assert e.value.field == "stuck_after"
    with pytest.raises(InvalidParam, match="stuck_after must be"):
        engine.submit(Job(puzzle(2), SolveParams(verify=True, stuck_after=1)))
