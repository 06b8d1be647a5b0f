"""When is a trajectory converged? One rule, shared by evaluation and the serving engine.

A trajectory has settled on an attractor when its decoded prediction has not changed for
``window`` consecutive iterations and its relative latent residual is below ``tol``.

Two iteration counts come out of it, and they differ by the confirmation window:

- *iterations to convergence*: the iteration at which the answer it settled on first appeared
  (the fixed point was reached there; an easy board often settles at iteration 1 or 2);
- *iterations run*: the iteration at which the rule fired, ``window`` or more later, which is
  what the trajectory cost (the engine evicts it then).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ConvergenceRule:
    """``window`` and ``tol`` decide when a trajectory has converged (and the engine evicts it);
    ``score_window`` is how many of the last logit changes the paper's convergence score averages
    (eqr.md §5.3: 3), which ranks trajectories for the most-converged aggregation whatever the
    eviction rule."""

    window: int = 3
    tol: float = 0.05
    score_window: int = 3

    def update_streak(self, streak: torch.Tensor, pred_change: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """Iterations in a row with an unchanged prediction and a small residual (0 resets)."""
        still = (pred_change == 0) & (residual < self.tol)
        return torch.where(still, streak + 1, torch.zeros_like(streak))

    def converged(self, streak: torch.Tensor) -> torch.Tensor:
        return streak >= self.window

    @staticmethod
    def update_changed_at(
        changed_at: torch.Tensor, pred_change: torch.Tensor, iteration: torch.Tensor | int
    ) -> torch.Tensor:
        """The iteration at which each prediction last changed: once converged, where its answer first appeared."""
        return torch.where(pred_change != 0, iteration, changed_at)
