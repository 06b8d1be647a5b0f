"""Continuous batching: slots are refilled in the step that frees them, finished work stops costing."""

from eqr.server.engine import Job, SolveParams, Status
from tests.server.engine.fake import FakeModel, answered, moving_board, puzzle, run_until_done, variant_answer


class Recorder:
    """An EngineObserver that keeps what it was told."""

    def __init__(self) -> None:
        self.iterations = 0
        self.evicted: dict[str, int] = {}
        self.finished: list[str] = []
        self.steps = 0
        self.moves = {"preempted": 0, "resumed": 0}
        self.saved_bytes: list[int] = []

    def on_step(self, duration_s, live_slots, capacity, queue_depth) -> None:
        self.steps += 1

    def on_evict(self, reason, count) -> None:
        self.evicted[reason] = self.evicted.get(reason, 0) + count

    def on_iterations(self, n) -> None:
        self.iterations += n

    def on_finished(self, result, job) -> None:
        self.finished.append(job.id)

    def on_preemption(self, preempted, resumed, saved_bytes, max_saved_bytes) -> None:
        self.moves["preempted"] += preempted
        self.moves["resumed"] += resumed
        self.saved_bytes.append(saved_bytes)


def test_evicted_slot_is_refilled_in_the_same_step(make_engine):
    engine = make_engine(slots=2)
    easy = engine.submit(Job(puzzle(1)))  # converges at iteration 1 + 3
    hard = engine.submit(Job(puzzle(9)))  # converges at iteration 9 + 3
    queued = engine.submit(Job(puzzle(2)))
    for _ in range(3):
        engine.step()
    assert not easy.done() and engine.stats().queue_depth == 1
    engine.step()  # iteration 4: easy converges, queued takes its slot before the step returns
    assert easy.result().iterations == [4]
    stats = engine.stats()
    assert stats.live_slots == 2 and stats.queue_depth == 0 and stats.queued_requests == 0
    run_until_done(engine, [hard, queued])
    assert queued.result().iterations == [5] and hard.result().iterations == [12]
    assert engine.stats().steps == 12  # queued ran iterations 5..9 alongside hard: no step was lost


def test_converged_trajectory_stops_consuming_iterations(make_engine):
    model, observer = FakeModel(), Recorder()
    engine = make_engine(model, observer, slots=4)
    easy = engine.submit(Job(puzzle(1)))
    hard = engine.submit(Job(puzzle(9)))
    run_until_done(engine, [easy, hard])
    assert model.rows == 4 + 12  # rows computed: each trajectory only until it converged
    assert observer.iterations == 16 and observer.evicted == {"converged": 2}
    assert observer.finished == [easy.result().request_id, hard.result().request_id]
    r = hard.result()
    assert r.status is Status.CONVERGED and r.answer == answered(variant_answer(0), 9)
    # its board settled at iteration 9; the rule confirmed it 3 iterations later, which is what it ran
    assert r.iterations_to_convergence == 9 and r.iterations == [12]


def test_depth_budget_evicts_and_reports_max_iterations(make_engine):
    model = FakeModel(settle={9: 10**6})
    engine = make_engine(model)
    future = engine.submit(Job(puzzle(9), SolveParams(depth=5)))
    run_until_done(engine, [future])
    r = future.result()
    assert r.status is Status.MAX_ITERATIONS and r.iterations == [5] and r.iterations_to_convergence is None
    assert r.answer == answered(moving_board(5), 9) and not r.valid and model.rows == 5


def test_state_follows_a_trajectory_when_its_row_moves(make_engine):
    """Releasing row 0 moves the last live row into it; the moved trajectory must carry on unchanged."""
    engine = make_engine(slots=3)
    first = engine.submit(Job(puzzle(1)))  # leaves at 4
    middle = engine.submit(Job(puzzle(6)))  # converges at 9
    last = engine.submit(Job(puzzle(7)))  # converges at 10, moves from row 2 to row 0 at step 4
    for _ in range(4):
        engine.step()
    assert first.done() and engine.pool.owners[0].request.id == last_id(last, engine)
    run_until_done(engine, [middle, last])
    assert middle.result().iterations == [9] and last.result().iterations == [10]


def last_id(future, engine) -> str:
    return next(r.id for r in engine.scheduler.active.values() if r.future is future)
