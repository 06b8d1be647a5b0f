"""Breadth aggregation rules (eqr.md §5.3): lowest score wins, vote ties go to the first seen."""

import pytest

from eqr.model.aggregate import aggregate, majority_vote, most_converged

A, B, C = (1, 2, 3), (1, 2, 4), (9, 9, 9)


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
    assert most_converged([A, B], [float("inf"), float("inf")]).index == 0


def test_converged_agreement_counts_equal_answers():
    assert most_converged([A, B, A], [0.3, 0.2, 0.1]).agreement == pytest.approx(2 / 3)


def test_aggregate_dispatches_and_rejects_unknown_rules():
    assert aggregate("converged", [A, B], [0.9, 0.1]).index == 1
    assert aggregate("vote", [A, B, B], [0.0, 0.9, 0.9]).index == 1
    with pytest.raises(ValueError, match="unknown aggregate rule 'best'"):
        aggregate("best", [A], [0.0])
    with pytest.raises(ValueError, match="no trajectories"):
        majority_vote([])
