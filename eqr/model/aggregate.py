"""Breadth aggregation rules (eqr.md §5.3): pick one answer from several trajectories.

Shared by offline evaluation and the serving engine, so both report the same answer for the
same trajectories.

The paper's evaluator (``locuslab/EqR`` at ``e993482``, ``evaluators/eval_fn.py`` ``_update_conv``)
ranks a puzzle's trajectories by convergence score, lowest first, and keeps the first
``convergence_top_k`` of them. It does not vote among those k: it reports the exactness of the first
one (``cumulative_exact_acc_top1``, the headline number), the mean exactness over the k and whether
any of the k is exact. Its one-answer pick is therefore the head of that ranking, which is
:func:`most_converged`; :func:`convergence_top_k` gives the whole ranked prefix for the top-k
metrics. docs/paper-protocol.md has the details.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

AGGREGATES = ("converged", "vote")

CONVERGENCE_TOP_K = 4
"""How many of the most-converged trajectories the paper's Sudoku evaluation reports on:
``convergence_top_k: 4`` in ``config/eval/sudoku_{lite,full}_act_streaming_noise05.yaml`` (line 19,
``e993482``) and in ``sudoku_{lite,full}_noise05.yaml`` (``aba94e9``). It sizes metrics only; the
answer is the first of them."""


@dataclass(frozen=True)
class Choice:
    index: int  # trajectory whose answer is returned
    agreement: float  # share of trajectories that gave the chosen answer


def _agreement(answers: Sequence[tuple[int, ...]], chosen: tuple[int, ...]) -> float:
    return sum(a == chosen for a in answers) / len(answers)


def convergence_top_k(scores: Sequence[float], k: int = CONVERGENCE_TOP_K) -> list[int]:
    """The ``k`` trajectories with the lowest convergence scores, lowest first.

    This is the official ranking (an ascending sort of the scores, cut at ``k``; a ``k`` above
    the breadth keeps them all, as the official ``min(convergence_top_k, breadth)`` does). The
    official code sorts with an unstable ``torch.argsort``, so its order among equal scores is
    unspecified; here equal scores keep trajectory order, so a rerun ranks the same way.
    """
    if not scores:
        raise ValueError("no trajectories to aggregate")
    if k < 1:
        raise ValueError(f"top-k needs k >= 1, got {k}")
    return sorted(range(len(scores)), key=lambda i: (scores[i], i))[:k]


def most_converged(answers: Sequence[tuple[int, ...]], scores: Sequence[float]) -> Choice:
    """The paper's headline rule: the first of :func:`convergence_top_k`, i.e. the trajectory with
    the lowest convergence score (first on ties); its exactness is ``cumulative_exact_acc_top1``."""
    if not answers:
        raise ValueError("no trajectories to aggregate")
    best = convergence_top_k(scores, 1)[0]
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
    """The pick of the named rule, so evaluation, ``eqr solve`` and the engine dispatch alike."""
    if rule == "converged":
        return most_converged(answers, scores)
    if rule == "vote":
        return majority_vote(answers)
    raise ValueError(f"unknown aggregate rule {rule!r}; use one of {AGGREGATES}")
