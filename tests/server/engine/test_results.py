"""What a request answers: breadth aggregation, quorum, learned halting, streaming, determinism."""

import dataclasses
from collections import Counter

import pytest
import torch

from eqr.kernels.rng import puzzle_key, trajectory_seeds
from eqr.model.config import EqRConfig
from eqr.model.network import EqRNetwork
from eqr.model.tasks.sudoku import SudokuTask
from eqr.server.engine import Engine, EngineConfig, Job, SolveParams, Status
from tests.server.engine.fake import FakeModel, answered, moving_board, puzzle, run_until_done, variant_answer

BREADTH = 5


def seeds_of(tokens: list[int], seed: int, breadth: int) -> list[int]:
    """The engine's trajectory seeds for a puzzle: its seed, its puzzle key, its index."""
    return trajectory_seeds(seed, puzzle_key(tokens), breadth)


def mixed_seed() -> tuple[int, list[int]]:
    """A seed whose 5 trajectories (3 answer variants) have a unique majority that is not the most converged."""
    for seed in range(1000):
        variants = [s % 3 for s in seeds_of(puzzle(2), seed, BREADTH)]
        (top, n), *rest = Counter(variants).most_common()
        if top != min(variants) and (not rest or rest[0][1] < n):
            return seed, variants
    raise AssertionError("no suitable seed")


@pytest.mark.parametrize("rule", ["vote", "converged"])
def test_breadth_aggregation(make_engine, rule):
    seed, variants = mixed_seed()
    engine = make_engine(FakeModel(variants=3), slots=8)
    future = engine.submit(Job(puzzle(2), SolveParams(breadth=BREADTH, aggregate=rule, seed=seed)))
    run_until_done(engine, [future])
    r = future.result()
    # vote: the most given answer; converged: the lowest score, 0.1 * (1 + variant)
    expected = Counter(variants).most_common(1)[0][0] if rule == "vote" else min(variants)
    assert r.answer == answered(variant_answer(expected), 2) and r.status is Status.CONVERGED
    assert r.agreement == variants.count(expected) / BREADTH
    assert r.convergence_score == pytest.approx(0.1 * (1 + expected))
    assert r.iterations == [5] * BREADTH and r.seed == seed


@pytest.mark.parametrize("folder_rule", ["vote", "converged"])
def test_a_request_naming_no_rule_gets_the_models(make_engine, folder_rule):
    seed, variants = mixed_seed()
    engine = make_engine(FakeModel(variants=3), slots=8, inference={"aggregate": folder_rule})
    assert engine.defaults.aggregate == folder_rule
    given = engine.submit(Job(puzzle(2), SolveParams(breadth=BREADTH, seed=seed)))
    named = engine.submit(Job(puzzle(2), SolveParams(breadth=BREADTH, seed=seed, aggregate="converged")))
    run_until_done(engine, [given, named])
    expected = Counter(variants).most_common(1)[0][0] if folder_rule == "vote" else min(variants)
    assert given.result().answer == answered(variant_answer(expected), 2)
    assert named.result().answer == answered(variant_answer(min(variants)), 2)  # a rule the request names wins


def test_a_model_folder_with_an_unknown_rule_is_refused(make_engine):
    with pytest.raises(ValueError, match=r"inference\.aggregate must be one of"):
        make_engine(inference={"aggregate": "mean"})


def test_quorum_stops_the_remaining_siblings(make_engine):
    """Trajectories settle at 1 + seed % 8; once two agree the others are evicted."""

    class Staggered(FakeModel):
        def iterate(self, batch):
            return super().iterate(dataclasses.replace(batch, steps=batch.steps - batch.seeds % 8))

    model = Staggered()
    engine = make_engine(model, slots=8)
    seed = 3
    future = engine.submit(Job(puzzle(1), SolveParams(breadth=6, quorum=2, seed=seed)))
    run_until_done(engine, [future])
    settle = [1 + s % 8 for s in seeds_of(puzzle(1), seed, 6)]
    finish = [s + 3 for s in settle]  # the rule fires at settle + window
    quorum_at = sorted(finish)[1]
    r = future.result()
    assert r.iterations == [min(f, quorum_at) for f in finish]
    assert model.rows == sum(r.iterations) < sum(finish)
    # equal scores: the first finished trajectory in index order reports the agreed answer
    chosen = next(k for k in range(6) if finish[k] <= quorum_at)
    assert r.status is Status.CONVERGED and r.agreement == 1.0 and r.iterations_to_convergence == settle[chosen]


def test_learned_halting_stops_at_the_first_positive_q(make_engine):
    engine = make_engine()
    halted = engine.submit(Job(puzzle(6), SolveParams(halt="q_halt")))
    rule = engine.submit(Job(puzzle(6)))
    run_until_done(engine, [halted, rule])
    assert halted.result().iterations == [6] and halted.result().status is Status.CONVERGED
    assert rule.result().iterations == [9]


def test_stream_events_every_n_iterations(make_engine):
    engine = make_engine(FakeModel(settle={9: 10**6}))
    events = []
    future = engine.submit(Job(puzzle(9), SolveParams(depth=10, stream_every=3, breadth=2)), on_event=events.append)
    run_until_done(engine, [future])
    # every 3rd iteration the most settled running trajectory (the first on ties); then each one's last
    assert [(e.iteration, e.trajectory, e.ended) for e in events] == [
        (3, 0, None), (6, 0, None), (9, 0, None), (10, 0, "depth"), (10, 1, "depth")
    ]  # fmt: skip
    assert all(e.board == answered(moving_board(e.iteration), 9) for e in events)
    assert [e.live_trajectories for e in events] == [2, 2, 2, 0, 0]  # still running after that step
    assert all(e.request_id == future.result().request_id and e.residual == 1.0 for e in events)
    assert all(e.restart == 0 and e.verified is None for e in events)  # not verified mode


def tiny_model() -> EqRNetwork:
    torch.manual_seed(0)
    cfg = EqRConfig(hidden_size=16, num_heads=2, expansion=2.0, multiple_of=16, L_layers=1, H_cycles=2, L_cycles=1)
    return EqRNetwork(cfg).eval()


def test_seeded_request_is_the_same_alone_and_in_a_full_batch():
    """Real network with noise: rows move, neighbours come and go, the trajectory does not change."""
    model = tiny_model()
    tokens = (
        SudokuTask()
        .encode("..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3..")
        .tolist()
    )
    job = SolveParams(depth=8, breadth=2, seed=42, noise=0.3, aggregate="vote")

    def solve(others: int):
        engine = Engine(model, EngineConfig(slots=6, window=2, tol=0.5), task=SudokuTask())
        neighbours = [engine.submit(Job(tokens, SolveParams(depth=2 + k, seed=k, noise=0.3))) for k in range(others)]
        future = engine.submit(Job(tokens, job))
        run_until_done(engine, [future, *neighbours])
        return future.result(), engine.stats().steps

    alone, alone_steps = solve(0)
    batched, batched_steps = solve(9)
    assert batched_steps > alone_steps  # it really waited for and shared slots
    assert batched.answer == alone.answer and batched.iterations == alone.iterations
    assert batched.convergence_score == alone.convergence_score and batched.agreement == alone.agreement


def test_score_averages_three_changes_whatever_the_eviction_window(make_engine):
    engine = make_engine(window=1)
    future = engine.submit(Job(puzzle(3)))  # moving at iterations 1 and 2, settled from iteration 3
    run_until_done(engine, [future])
    r = future.result()
    # window 1: evicted at iteration 4, the first unchanged board; the answer appeared at 3
    assert (r.iterations, r.iterations_to_convergence) == ([4], 3)
    # the paper's score still averages the last 3 changes between iterations: 1.0 (2 vs 1), 0.1, 0.1
    assert r.convergence_score == pytest.approx(0.4)


def test_the_first_iteration_has_no_change_to_score(make_engine):
    engine = make_engine(window=1)
    future = engine.submit(Job(puzzle(2)))  # moving at iteration 1, settled from 2: evicted at 3
    run_until_done(engine, [future])
    r = future.result()
    assert (r.iterations, r.iterations_to_convergence) == ([3], 2)
    # two changes so far (2 vs 1, 3 vs 2), 0.1 each; iteration 1's logits, measured against
    # nothing, do not count (they would make it 0.4), as in rollout() and solve_offline()
    assert r.convergence_score == pytest.approx(0.1)
