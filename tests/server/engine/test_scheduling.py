"""Queue policy and early endings: priority with aging, queue limits, caps, cancel, deadline."""

import pytest

from eqr.server.engine import EngineStopped, InvalidParam, Job, Overloaded, SolveParams, Status
from tests.server.engine.fake import FakeModel, answered, moving_board, puzzle, run_until_done

NEVER = {9: 10**6}  # first cell 9: never settles


def completion_order(engine, futures: dict[str, object]) -> list[str]:
    order: list[str] = []
    for name, future in futures.items():
        future.add_done_callback(lambda _f, name=name: order.append(name))
    run_until_done(engine, list(futures.values()))
    return order


def test_higher_priority_first_then_arrival(make_engine):
    engine = make_engine(slots=1, aging_per_s=0.0, scheduler="fcfs")
    futures = {"blocker": engine.submit(Job(puzzle(1)))}
    engine.step()  # blocker holds the only slot; the rest queue
    for name, priority in [("low", 0), ("high", 5), ("mid", 1), ("mid2", 1)]:
        futures[name] = engine.submit(Job(puzzle(1), SolveParams(priority=priority)))
    assert completion_order(engine, futures) == ["blocker", "high", "mid", "mid2", "low"]


@pytest.mark.parametrize("aging_per_s", [0.0, 1000.0])
def test_aging_lets_low_priority_run_under_a_stream_of_high_priority(make_engine, clock, aging_per_s):
    """High-priority work keeps arriving as fast as it is served; only aging gets the low one a slot."""
    engine = make_engine(slots=1, aging_per_s=aging_per_s, clock=clock)
    engine.submit(Job(puzzle(1), SolveParams(priority=10)))
    low = engine.submit(Job(puzzle(1), SolveParams(priority=0)))
    for step in range(60):
        if step % 4 == 0:  # one high-priority job per service time (4 iterations)
            engine.submit(Job(puzzle(1), SolveParams(priority=10)))
        clock.advance(0.002)
        engine.step()
    # with 1000/s, priority 10 is made up after 10 ms of waiting
    assert low.done() is (aging_per_s > 0)


def test_queue_full_counts_trajectories(make_engine):
    engine = make_engine(slots=1, max_queue=3)
    engine.submit(Job(puzzle(1), SolveParams(breadth=2)))
    with pytest.raises(Overloaded) as info:
        engine.submit(Job(puzzle(1), SolveParams(breadth=2)))
    assert info.value.retry_after_s >= 1.0 and engine.stats().queue_depth == 2
    engine.step()  # one trajectory takes the slot: 1 waits, 2 more fit
    engine.submit(Job(puzzle(1), SolveParams(breadth=2)))
    assert engine.stats().queue_depth == 3


@pytest.mark.parametrize(
    ("job", "field"),
    [
        (Job(puzzle(), SolveParams(depth=9)), "depth"),
        (Job(puzzle(), SolveParams(depth=0)), "depth"),
        (Job(puzzle(), SolveParams(breadth=5)), "breadth"),
        (Job(puzzle(), SolveParams(breadth=2, quorum=3)), "quorum"),
        (Job(puzzle(), SolveParams(aggregate="mean")), "aggregate"),
        (Job(puzzle(), SolveParams(halt="never")), "halt"),
        (Job(puzzle(), SolveParams(noise=-1.0)), "noise"),
        (Job(puzzle(), SolveParams(noise=float("nan"))), "noise"),
        (Job(puzzle(), SolveParams(seed=-1)), "seed"),
        (Job(puzzle(), SolveParams(seed=2**63)), "seed"),
        (Job(puzzle(), SolveParams(timeout_ms=0)), "timeout_ms"),
        (Job(puzzle(), SolveParams(stream_every=0)), "stream_every"),
        (Job(puzzle(), SolveParams(depth=2.5)), "depth"),
        (Job([1] * 80), "tokens"),
        (Job([11] * 81), "tokens"),
        (Job([True] * 81), "tokens"),
        (Job(puzzle(), model="maze-small"), "model"),
    ],
)
def test_caps_and_parameters_are_enforced(make_engine, job, field):
    engine = make_engine(max_depth=8, max_breadth=4)
    with pytest.raises(InvalidParam) as info:
        engine.submit(job)
    assert isinstance(info.value, ValueError) and info.value.field == field and field in str(info.value)
    assert engine.stats().in_flight == 0


def test_defaults_are_capped_and_duplicate_ids_refused(make_engine):
    engine = make_engine(max_depth=8)
    assert engine.defaults.depth == 8 and engine.caps["depth"] == 8
    job = Job(puzzle(9))
    engine.submit(job)
    with pytest.raises(InvalidParam, match="in flight"):
        engine.submit(Job(puzzle(9), id=job.id))


def test_cancel_frees_slots_within_one_step(make_engine):
    model = FakeModel(settle=NEVER)
    engine = make_engine(model, slots=2, scheduler="fcfs")
    job = Job(puzzle(9), SolveParams(breadth=2))
    doomed = engine.submit(job)
    queued = engine.submit(Job(puzzle(9), SolveParams(breadth=2, depth=3)))
    engine.step()
    assert engine.cancel(job.id)
    engine.step()  # the cancel frees both slots before the model runs: the queued request runs in them
    r = doomed.result(timeout=0)
    assert r.status is Status.CANCELLED and r.iterations == [1, 1] and r.answer == answered(moving_board(1), 9)
    assert model.rows == 2 + 2 and engine.stats().live_slots == 2
    run_until_done(engine, [queued])
    assert queued.result().iterations == [3, 3]
    assert not engine.cancel(r.request_id) and not engine.cancel("unknown")


def test_cancel_of_a_queued_request(make_engine):
    engine = make_engine(slots=1)
    engine.submit(Job(puzzle(9)))
    job = Job(puzzle(1))
    waiting = engine.submit(job)
    engine.step()
    assert engine.cancel(job.id)
    engine.step()
    r = waiting.result(timeout=0)
    assert r.status is Status.CANCELLED and r.iterations == [0] and r.answer == job.tokens
    assert engine.stats().queue_depth == 0 and engine.stats().queued_requests == 0


def test_cancel_before_the_first_iteration_reports_no_state(make_engine):
    engine = make_engine(slots=1)
    engine.submit(Job(puzzle(1)))
    job = Job(puzzle(2))
    refill = engine.submit(job)
    for _ in range(4):
        engine.step()
    assert engine.pool.owners[0].request.id == job.id  # took the freed slot, has not run yet
    engine.cancel(job.id)
    engine.step()
    r = refill.result(timeout=0)
    assert r.status is Status.CANCELLED and r.iterations == [0] and r.answer == job.tokens


def test_deadline_answers_with_the_best_so_far_state(make_engine, clock):
    model = FakeModel(settle=NEVER)
    engine = make_engine(model, slots=2, clock=clock)
    future = engine.submit(Job(puzzle(9), SolveParams(timeout_ms=200)))
    engine.step()
    engine.step()
    clock.advance(0.2)
    engine.step()  # expired before the model runs: no third iteration
    r = future.result(timeout=0)
    assert r.status is Status.DEADLINE and r.iterations == [2] and r.answer == answered(moving_board(2), 9)
    assert r.agreement == 1.0 and r.compute_ms > 0 and model.rows == 2


def test_deadline_while_queued_returns_the_givens(make_engine, clock):
    engine = make_engine(slots=1, clock=clock)
    engine.submit(Job(puzzle(9)))
    job = Job(puzzle(1), SolveParams(timeout_ms=1))
    future = engine.submit(job)
    clock.advance(0.005)
    engine.step()
    r = future.result(timeout=0)
    assert r.status is Status.DEADLINE and r.iterations == [0] and r.answer == job.tokens and r.compute_ms == 0


def test_stopped_engine_refuses_work(make_engine):
    engine = make_engine()
    engine.stop()
    with pytest.raises(EngineStopped):
        engine.submit(Job(puzzle(1)))
