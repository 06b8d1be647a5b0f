"""When is a trajectory converged? One rule, shared by evaluation and the serving engine.

A trajectory has settled on an attractor when its decoded prediction has not changed for
``window`` consecutive iterations and its relative latent residual is below ``tol``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ConvergenceRule:
    window: int = 3
    tol: float = 0.05

    def update_streak(self, streak: torch.Tensor, pred_change: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """Iterations in a row with an unchanged prediction and a small residual (0 resets)."""
        still = (pred_change == 0) & (residual < self.tol)
        return torch.where(still, streak + 1, torch.zeros_like(streak))

    def converged(self, streak: torch.Tensor) -> torch.Tensor:
        return streak >= self.window
