"""Breadth aggregation rules (eqr.md §5.3): lowest score wins, vote ties go to the first seen."""

import pytest

from eqr.model.aggregate import (
    CONVERGENCE_TOP_K,
    aggregate,
    convergence_top_k,
    majority_vote,
    most_converged,
)

A, B, C = (1, 2, 3), (1, 2, 4), (9, 9, 9)
INF = float("inf")


def test_vote_picks_the_mode_and_reports_its_first_trajectory():
    choice = majority_vote([C, A, B, A])
    assert choice.index == 1 and choice.agreement == 0.5


def test_vote_tie_goes_to_the_answer_seen_first():
    assert majority_vote([B, A, A, B]).index == 0
    tie = majority_vote([C, A, B, B, A])  # A and B both twice; A is seen first, at 1
    assert tie.index == 1 and tie.agreement == 0.4


def test_converged_picks_lowest_score_first_on_ties():
    choice = most_converged([A, B, C], [0.5, 0.1, 0.3])
    assert choice.index == 1 and choice.agreement == pytest.approx(1 / 3)
    assert most_converged([A, B, A], [0.2, 0.1, 0.1]).index == 1
    assert most_converged([A, B], [INF, INF]).index == 0


def test_converged_agreement_counts_equal_answers():
    assert most_converged([A, B, A], [0.3, 0.2, 0.1]).agreement == pytest.approx(2 / 3)


def test_aggregate_dispatches_and_rejects_unknown_rules():
    assert aggregate("converged", [A, B], [0.9, 0.1]).index == 1
    assert aggregate("vote", [A, B, B], [0.0, 0.9, 0.9]).index == 1
    with pytest.raises(ValueError, match="unknown aggregate rule 'best'"):
        aggregate("best", [A], [0.0])
    with pytest.raises(ValueError, match="no trajectories"):
        majority_vote([])


def test_top_k_ranks_lowest_first_and_defaults_to_the_papers_k():
    scores = [0.7, 0.2, 0.9, 0.1, 0.5, 0.3]
    assert CONVERGENCE_TOP_K == 4  # convergence_top_k: 4 in the official Sudoku eval configs
    assert convergence_top_k(scores) == [3, 1, 5, 4]
    assert convergence_top_k(scores, 2) == [3, 1]


def test_top_k_keeps_trajectory_order_on_ties_and_clamps_k_to_the_breadth():
    assert convergence_top_k([0.2, 0.1, 0.2, 0.1], 3) == [1, 3, 0]
    assert convergence_top_k([INF, 0.4, INF], 10) == [1, 0, 2]  # official: k = min(top_k, breadth)


def test_top_k_rejects_an_empty_breadth_and_k_below_one():
    with pytest.raises(ValueError, match="no trajectories"):
        convergence_top_k([], 1)
    with pytest.raises(ValueError, match="k >= 1"):
        convergence_top_k([0.1], 0)


def test_converged_pick_is_the_head_of_the_top_k_ranking():
    for scores in ([0.3, 0.3, 0.1], [INF, 0.0, 0.0], [0.5], [2.0, 1.0, INF, 1.0]):
        answers = [(i,) for i in range(len(scores))]
        assert most_converged(answers, scores).index == convergence_top_k(scores)[0]


def test_worked_example_of_the_official_streaming_selection():
    """Six trajectories of one puzzle, worked by hand through the official ACT-streaming evaluator,
    ``evaluators/eval_fn.py`` at locuslab/EqR ``e993482`` (depth D=6 and k=3 here; the paper uses
    64 and 4):

    - lines 463-474: after each step, a trajectory's delta is the L2 norm over the vocabulary of its
      logit change, averaged over positions; a rolling sum keeps the last ``convergence_window`` (3)
      deltas and counts them (at most 3). A job's first step has no previous logits: it adds nothing.
    - lines 478-479: a job halts when ``q_halt > 0`` (from step 1) or at step D.
    - lines 490, 496: its score is that rolling sum over ``max(count, 1)``, so a job that halts at
      step 1 scores exactly 0, the best possible score.
    - line 225: the puzzle's trajectories sorted by score, ascending, first k kept; lines 233-234
      and 345: ``cumulative_exact_acc_top1`` judges the first of them, the answer the paper reports.

    This project's tracker (eqr/runtime/tracker.py, ``scores``) scores a trajectory with no recorded
    delta ``inf`` instead of 0, so the step-1 halter is the worst, not the best; with everything
    else equal, that alone moves the pick. Majority vote picks a third answer.
    """
    answers = [A, B, A, C, A, C]
    # deltas of steps 2, 3, ... up to the halt; official score = mean of the last (up to) 3
    official = [
        (0.4 + 0.3 + 0.2) / 3,  # 0: ran to D=6, deltas 0.9 0.5 0.4 0.3 0.2 -> 0.30
        0.0,  # 1: q_halt > 0 at step 1, no delta: 0 / max(0, 1) = 0.00
        (0.6 + 0.3) / 2,  # 2: q_halt at step 3, deltas 0.6 0.3 -> 0.45
        (0.1 + 0.1 + 0.1) / 3,  # 3: ran to D=6, deltas 0.5 0.2 0.1 0.1 0.1 -> 0.10
        (0.3 + 0.33 + 0.33) / 3,  # 4: ran to D=6, deltas 0.4 0.4 0.3 0.33 0.33 -> 0.32
        (0.8 + 0.2 + 0.05) / 3,  # 5: q_halt at step 4, deltas 0.8 0.2 0.05 -> 0.35
    ]
    tracked = [INF if i == 1 else s for i, s in enumerate(official)]  # the project's scores today

    assert convergence_top_k(official, 3) == [1, 3, 0]  # scores 0.00, 0.10, 0.30
    pick = most_converged(answers, official)
    assert (pick.index, answers[pick.index]) == (1, B) and pick.agreement == pytest.approx(1 / 6)

    assert convergence_top_k(tracked, 3) == [3, 0, 4]  # scores 0.10, 0.30, 0.32
    assert aggregate("converged", answers, tracked).index == 3  # C: differs from the official B
    vote = aggregate("vote", answers, official)
    assert (vote.index, answers[vote.index], vote.agreement) == (0, A, 0.5)  # A: three of six
