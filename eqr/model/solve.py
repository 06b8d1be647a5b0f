"""Offline solving of one puzzle in-process, without a server.

:func:`solve_offline` is a rollout (:func:`eqr.runtime.rollout.rollout`: the engine's slot pool,
runner, step and convergence tracker), so an easy puzzle costs a handful of iterations instead of
the whole depth budget, and a seed names the same trajectories as a server request with that
seed (:func:`eqr.kernels.rng.trajectory_seed`): the same answer and iteration counts. Remote solving
through a server is a separate path; this module never talks to the network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from eqr.kernels import rng
from eqr.model.aggregate import AGGREGATES, aggregate
from eqr.model.convergence import ConvergenceRule
from eqr.model.network import EqRNetwork
from eqr.model.tasks.base import Task
from eqr.runtime.rollout import rollout


@dataclass(frozen=True)
class InferenceDefaults:
    depth: int
    noise: float
    rule: ConvergenceRule
    aggregate: str  # the breadth rule the folder asks for (the paper's most-converged when it names none)


def inference_defaults(model: EqRNetwork, meta: dict[str, Any]) -> InferenceDefaults:
    """Depth, noise and convergence rule a model folder asks for (its ``inference`` block).

    A model trained with little noise may be tuned for a different serving σ or depth than its
    architecture defaults, so the checkpoint's own ``inference`` block wins over the config.
    """
    inf = meta.get("inference") or {}
    base = ConvergenceRule()
    return InferenceDefaults(
        depth=int(inf.get("depth", model.cfg.halt_max_steps)),
        noise=float(inf.get("noise", model.cfg.noise_scale)),
        rule=ConvergenceRule(window=int(inf.get("window", base.window)), tol=float(inf.get("tol", base.tol))),
        aggregate=str(inf.get("aggregate", "converged")),
    )


@dataclass
class OfflineSolution:
    answer: list[int]  # token ids (the task shows them)
    valid: bool | None  # obeys the task's rules and keeps the givens; None: the task has no rules
    status: str  # "converged" or "max_iterations" (same words as the engine's Status)
    iterations: list[int]  # iterations run per trajectory (a converged one leaves: the engine's count)
    converged_at: int | None  # iteration at which the chosen trajectory's answer settled; None if it never converged
    converged_trajectories: int
    breadth: int
    trajectory: int  # index of the chosen trajectory
    agreement: float  # share of trajectories that gave the chosen answer
    convergence_score: float  # mean logit change over the last 3 iterations (lower = settled)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def solve_offline(
    model: EqRNetwork,
    task: Task,
    puzzle: np.ndarray,
    depth: int,
    breadth: int = 1,
    rule_name: str = "converged",
    noise: float = 0.0,
    seed: int = 0,
    rule: ConvergenceRule | None = None,
) -> OfflineSolution:
    """Iterate ``breadth`` trajectories of one puzzle (``task``'s tokens) until all converged or ``depth`` is spent."""
    if depth < 1 or breadth < 1:
        raise ValueError("depth and breadth must be at least 1")
    if rule_name not in AGGREGATES:
        raise ValueError(f"unknown aggregate rule {rule_name!r}; use one of {AGGREGATES}")
    rule = rule or ConvergenceRule()
    tokens = torch.as_tensor(np.asarray(puzzle, dtype=np.int64)).repeat(breadth, 1)
    seeds = rng.trajectory_seeds(seed, rng.puzzle_key(tokens[0]), breadth)
    r = rollout(model, tokens, seeds, depth, noise, rule=rule, batch_size=breadth, allowed=task.allowed)
    converged = r.detected_at <= depth
    runs = r.detected_at.clamp(max=depth).tolist()  # what each trajectory ran: as the engine reports it
    scores = r.scores[-1].tolist()
    answers = [tuple(row) for row in r.preds[-1].tolist()]
    choice = aggregate(rule_name, answers, scores)
    answer = np.asarray(answers[choice.index], dtype=np.int64)
    chosen_converged = bool(converged[choice.index])
    return OfflineSolution(
        answer=answer.tolist(),
        valid=task.verify(np.asarray(puzzle), answer),
        status="converged" if chosen_converged else "max_iterations",
        iterations=runs,
        converged_at=int(r.converged_at[choice.index]) if chosen_converged else None,
        converged_trajectories=int(converged.sum()),
        breadth=breadth,
        trajectory=choice.index,
        agreement=choice.agreement,
        convergence_score=float(scores[choice.index]),
    )
