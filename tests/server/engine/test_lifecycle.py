"""The engine thread: serving from other threads, surviving failures, draining on stop."""

import threading

from eqr.server.engine import Job, SolveParams, Status
from tests.server.engine.fake import FakeModel, puzzle, run_until_done

NEVER = {9: 10**6}


def test_model_exception_fails_the_step_s_requests_and_the_queue_carries_on(make_engine):
    model = FakeModel()
    engine = make_engine(model, slots=2)
    bad = engine.submit(Job(puzzle(1, fail=True)))
    neighbour = engine.submit(Job(puzzle(1)))  # shares the failing step
    queued = engine.submit(Job(puzzle(1)))  # waits for a slot
    engine.step()
    for future in (bad, neighbour):
        r = future.result(timeout=0)
        assert r.status is Status.FAILED and "fake model failure" in r.error and r.iterations == [0]
    assert "RuntimeError: fake model failure" in engine.stats().error
    run_until_done(engine, [queued])
    assert queued.result().status is Status.CONVERGED and queued.result().iterations == [4]


def test_thread_serves_other_threads_and_survives_a_model_exception(make_engine):
    engine = make_engine(FakeModel(delay_s=0.001), slots=4)
    engine.start()
    assert engine.submit(Job(puzzle(1, fail=True))).result(timeout=10).status is Status.FAILED
    results = []

    def client(first: int) -> None:
        results.append(engine.submit(Job(puzzle(first), SolveParams(breadth=2))).result(timeout=10))

    clients = [threading.Thread(target=client, args=(d,)) for d in range(1, 7)]
    for t in clients:
        t.start()
    for t in clients:
        t.join()
    assert sorted(r.iterations[0] for r in results) == [4, 5, 6, 7, 8, 9]
    assert all(r.status is Status.CONVERGED for r in results)
    assert engine.stats().in_flight == 0 and engine.stats().error is not None


def test_stop_drains_running_work_then_cancels_the_rest(make_engine):
    engine = make_engine(FakeModel(settle=NEVER, delay_s=0.005), slots=2)
    quick = [engine.submit(Job(puzzle(d))) for d in (1, 2, 3)]  # done within 10 steps
    slow = engine.submit(Job(puzzle(9), SolveParams(depth=256)))  # 256 steps: > 1.3 s
    engine.start()
    engine.stop(drain_timeout=0.5)
    assert all(f.result(timeout=0).status is Status.CONVERGED for f in quick)
    r = slow.result(timeout=0)
    assert r.status is Status.CANCELLED and 0 < r.iterations[0] < 256 and r.answer != puzzle(9)
    stats = engine.stats()
    assert stats.draining and stats.in_flight == 0 and stats.live_slots == 0


def test_drain_reports_whether_everything_finished(make_engine):
    engine = make_engine(FakeModel(delay_s=0.001))
    futures = [engine.submit(Job(puzzle(d))) for d in (1, 5)]
    engine.start()
    assert engine.drain(timeout=10)
    assert all(f.done() for f in futures) and engine.stats().draining


def test_stop_without_drain_cancels_queued_work(make_engine):
    engine = make_engine()
    future = engine.submit(Job(puzzle(1)))
    engine.stop()
    assert future.result(timeout=0).status is Status.CANCELLED
    assert not future.cancel()  # futures are resolved by the engine only


def test_a_fault_outside_the_model_fails_what_is_in_flight_and_the_loop_goes_on(make_engine):
    engine = make_engine(FakeModel(delay_s=0.001))
    broken = engine.scheduler

    def postprocess(*report):
        raise KeyError("bookkeeping bug")

    broken.postprocess = postprocess
    engine.start()
    r = engine.submit(Job(puzzle(1))).result(timeout=10)
    assert r.status is Status.FAILED and "bookkeeping bug" in r.error and "KeyError" in engine.stats().error
    assert engine.scheduler is not broken  # state rebuilt: new work is served
    assert engine.submit(Job(puzzle(1))).result(timeout=10).status is Status.CONVERGED
