"""Breadth aggregation rules (eqr.md §5.3): pick one answer from several trajectories.

Shared by offline evaluation and the serving engine, so both report the same answer for the
same trajectories.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

AGGREGATES = ("converged", "vote")


@dataclass(frozen=True)
class Choice:
    index: int  # trajectory whose answer is returned
    agreement: float  # share of trajectories that gave the chosen answer


def _agreement(answers: Sequence[tuple[int, ...]], chosen: tuple[int, ...]) -> float:
    return sum(a == chosen for a in answers) / len(answers)


def most_converged(answers: Sequence[tuple[int, ...]], scores: Sequence[float]) -> Choice:
    """The paper's headline rule: the trajectory with the lowest convergence score (first on ties)."""
    if not answers:
        raise ValueError("no trajectories to aggregate")
    best = min(range(len(scores)), key=lambda i: (scores[i], i))
    return Choice(best, _agreement(answers, answers[best]))


def majority_vote(answers: Sequence[tuple[int, ...]]) -> Choice:
    """Mode of the whole answers; ties go to the answer seen first in trajectory order."""
    if not answers:
        raise ValueError("no trajectories to aggregate")
    counts: dict[tuple[int, ...], int] = {}
    first: dict[tuple[int, ...], int] = {}
    for i, a in enumerate(answers):
        counts[a] = counts.get(a, 0) + 1
        first.setdefault(a, i)
    chosen = max(counts, key=lambda a: (counts[a], -first[a]))
    return Choice(first[chosen], counts[chosen] / len(answers))


def aggregate(rule: str, answers: Sequence[tuple[int, ...]], scores: Sequence[float]) -> Choice:
    if rule == "converged":
        return most_converged(answers, scores)
    if rule == "vote":
        return majority_vote(answers)
    raise ValueError(f"unknown aggregate rule {rule!r}; use one of {AGGREGATES}")
