"""The fair scheduler: preemption by attained service, priority and aging on top, shares per request and
client, deadlines within a class, the saved-state bound, and work-conserving breadth on idle slots.

The fake model (tests/server/engine/fake.py) keys its prediction on the slot's iteration count, so a
trajectory that resumed from the wrong state would answer (and converge) differently; the real model's
bit-identical resumption is tested in tests/runtime/test_preemption.py. Times move on a fake clock.
"""

from __future__ import annotations

import pytest

from eqr.server.engine import Job, Overloaded, SolveParams, Status
from eqr.server.engine.sharing import level, share
from tests.server.engine.fake import FakeModel, answered, puzzle, run_until_done, variant_answer
from tests.server.engine.test_batching import Recorder

SLOW = {8: 40}  # first cell 8: settles at iteration 40 (converges at 43 with the window of 3)


def test_levels_double_from_the_quantum():
    assert [level(a, 16) for a in (0, 15, 16, 31, 32, 64, 1024)] == [0, 0, 1, 1, 2, 3, 7]


def test_share_gives_equals_their_shares_then_the_rest_in_order():
    want = {"a": 16, "b": 1, "c": 16}.__getitem__
    clients = {"a": "x", "b": "x", "c": "y"}.__getitem__
    # three tied requests, two clients: 8 slots a client, split among its requests; then the rest in order
    assert share(["a", "b", "c"], 16, want, clients, tied=3) == {"a": 7, "b": 1, "c": 8}
    # only b leads its class: it gets what it wants, then the rest in order
    assert share(["b", "a", "c"], 16, want, clients, tied=1) == {"b": 1, "a": 15, "c": 0}
    # two clients tied: one cannot hold the pool however many requests it sends
    many = {f"r{i}": 4 for i in range(8)} | {"z": 16}
    order = [*(f"r{i}" for i in range(8)), "z"]
    given = share(order, 16, many.__getitem__, lambda r: "y" if r == "z" else "x", tied=9)
    assert given["z"] == 8 and sum(given.values()) == 16


def test_a_new_request_preempts_one_with_more_service_which_resumes_where_it_stopped(make_engine):
    alone = make_engine(FakeModel(settle=SLOW), slots=1)
    reference = alone.submit(Job(puzzle(8), SolveParams(seed=5)))
    run_until_done(alone, [reference])

    recorder = Recorder()
    engine = make_engine(FakeModel(settle=SLOW), slots=1, observer=recorder)
    heavy = engine.submit(Job(puzzle(8), SolveParams(seed=5)))
    for _ in range(20):
        engine.step()
    easy = engine.submit(Job(puzzle(1), SolveParams(seed=1)))
    steps = run_until_done(engine, [easy])
    assert steps == 4 and easy.result().iterations == [4]  # it ran at once, not after the heavy one
    assert engine.stats().preempted == 0 and recorder.moves == {"preempted": 1, "resumed": 1}
    assert max(recorder.saved_bytes) == engine.pool.row_bytes
    run_until_done(engine, [heavy])
    got, want = heavy.result(), reference.result()
    assert got.answer == want.answer == answered(variant_answer(0), 8) and got.iterations == want.iterations == [43]
    assert got.iterations_to_convergence == want.iterations_to_convergence == 40


def test_first_come_never_preempts(make_engine):
    engine = make_engine(FakeModel(settle=SLOW), slots=1, scheduler="fcfs")
    heavy = engine.submit(Job(puzzle(8)))
    engine.step()
    easy = engine.submit(Job(puzzle(1)))
    run_until_done(engine, [easy])
    assert heavy.done() and heavy.result().iterations == [43]


def test_priority_preempts_and_aging_lets_the_preempted_back(make_engine, clock):
    engine = make_engine(FakeModel(settle={8: 10**6}), slots=1, clock=clock, aging_per_s=1.0)
    low = engine.submit(Job(puzzle(8), SolveParams(depth=30)))
    engine.step()
    high = engine.submit(Job(puzzle(8), SolveParams(priority=5, depth=200)))
    engine.step()
    assert engine.stats().preempted == 1  # low waits, its state saved
    for _ in range(20):  # 20 steps of 0.1 s: low waits 2 s, not enough to make up priority 5
        clock.advance(0.1)
        engine.step()
    assert engine.stats().preempted == 1
    for _ in range(200):  # aging makes up priority 5 less high's level: low gets turns, high keeps most
        clock.advance(0.1)
        engine.step()
        if low.done():
            break
    assert low.done() and not high.done()
    assert low.result().iterations == [30]  # every stint counted: its depth, exactly


def test_a_request_cannot_hold_the_pool_among_equals(make_engine):
    engine = make_engine(FakeModel(settle={8: 10**6}), slots=4)
    wide = engine.submit(Job(puzzle(8), SolveParams(breadth=4, depth=10)))
    narrow = engine.submit(Job(puzzle(8), SolveParams(breadth=1, depth=10)))
    engine.step()  # both new, tied: 2 slots each at most, then the rest in order: wide 3, narrow 1
    assert engine.stats().live_slots == 4 and engine.stats().queue_depth == 1
    run_until_done(engine, [wide, narrow])
    assert narrow.result().iterations == [10]


def test_clients_share_the_pool(make_engine):
    engine = make_engine(FakeModel(settle={8: 10**6}), slots=4)
    flood = [engine.submit(Job(puzzle(8), SolveParams(depth=5), client="ip:a")) for _ in range(6)]
    other = engine.submit(Job(puzzle(8), SolveParams(depth=5), client="ip:b"))
    steps = run_until_done(engine, [other])
    assert steps == 5  # it ran from the first step: 2 of the 4 slots are its client's share
    assert not all(f.done() for f in flood)


def test_deadline_first_within_a_class(make_engine, clock):
    engine = make_engine(FakeModel(settle={8: 10**6}), slots=1, clock=clock, scheduler="fair")
    blocker = engine.submit(Job(puzzle(8), SolveParams(depth=3)))
    later = engine.submit(Job(puzzle(8), SolveParams(depth=3, timeout_ms=60_000)))
    sooner = engine.submit(Job(puzzle(8), SolveParams(depth=3, timeout_ms=30_000)))
    order: list[str] = []
    for name, f in (("blocker", blocker), ("later", later), ("sooner", sooner)):
        f.add_done_callback(lambda _f, name=name: order.append(name))
    run_until_done(engine, [blocker, later, sooner])
    assert order == ["sooner", "later", "blocker"]


def test_saved_state_bound_makes_new_work_wait_and_the_queue_refuse(make_engine):
    engine = make_engine(FakeModel(settle={8: 10**6}), slots=1, max_saved_bytes=0, max_queue=1)
    heavy = engine.submit(Job(puzzle(8), SolveParams(depth=20)))
    for _ in range(5):
        engine.step()
    easy = engine.submit(Job(puzzle(1)))
    engine.step()
    assert engine.stats().preempted == 0 and engine.stats().queue_depth == 1  # nothing may be saved: it waits
    with pytest.raises(Overloaded):
        engine.submit(Job(puzzle(1)))
    run_until_done(engine, [heavy, easy])
    assert heavy.result().iterations == [20] and easy.result().iterations == [4]


def test_idle_slots_start_breadth_on_demand_at_once(make_engine):
    engine = make_engine(FakeModel(variants=3), slots=8)
    future = engine.submit(Job(puzzle(2), SolveParams(seed=4, breadth=16, breadth_mode="on_demand")))
    engine.step()
    assert engine.stats().live_slots == 8  # the quorum's 2, and 6 more on idle slots
    run_until_done(engine, [future])
    r = future.result()
    assert r.status is Status.CONVERGED and len(r.iterations) == 8 and set(r.iterations) == {5}


def test_under_load_breadth_on_demand_stays_frugal(make_engine):
    engine = make_engine(FakeModel(variants=1, settle={8: 10**6}), slots=4)
    for _ in range(4):
        engine.submit(Job(puzzle(8), SolveParams(depth=50)))  # keep every slot busy, more waiting
    on_demand = engine.submit(Job(puzzle(2), SolveParams(seed=4, breadth=16, breadth_mode="on_demand")))
    run_until_done(engine, [on_demand])
    assert on_demand.result().iterations == [5, 5]  # the quorum's two, agreeing: nothing ahead of need


def test_idle_slots_run_verified_restarts_ahead(make_engine):
    engine = make_engine(FakeModel(variants=9), slots=4)
    future = engine.submit(Job(puzzle(2), SolveParams(seed=2, verify=True, depth=8, budget=64)))
    engine.step()
    assert engine.stats().live_slots == 4  # one trajectory and three restarts ahead of a failure
    run_until_done(engine, [future])
    r = future.result()
    assert r.verified is True and sum(r.iterations) <= 64
