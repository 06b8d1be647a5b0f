"""The convergence tracker: per-slot bookkeeping on the device, and the verdict of who leaves.

One implementation for the serving engine and the offline rollouts (evaluation, ``eqr solve``,
training probes), so "converged" means the same thing everywhere. The state lives in
fixed-capacity device tensors next to the slot pool's; :meth:`ConvergenceTracker.update` folds one
:class:`~eqr.model.step.StepOutput` in and returns one small code per slot, so a step costs no
per-slot Python and a single device-to-host copy of ``live`` bytes.
"""

from __future__ import annotations

import math

import torch

from eqr.model.convergence import ConvergenceRule
from eqr.model.step import StepOutput
from eqr.runtime.decisions import Leave


class ConvergenceTracker:
    """Per-slot iteration count, convergence streak, last change and score ring, ``capacity`` rows each."""

    def __init__(self, capacity: int, rule: ConvergenceRule, device: torch.device) -> None:
        self.rule = rule
        self.score_window = rule.score_window
        c, long = capacity, torch.long
        self.steps = torch.zeros(c, dtype=long, device=device)  # iterations run; keys the noise
        self.depth = torch.zeros(c, dtype=long, device=device)
        self.halt_on_q = torch.zeros(c, dtype=torch.bool, device=device)
        self.streak = torch.zeros(c, dtype=long, device=device)
        self.changed_at = torch.zeros(c, dtype=long, device=device)  # iteration of the last prediction change
        self.deltas = torch.zeros(c, rule.score_window, dtype=torch.float32, device=device)  # ring of logit deltas
        self.residual = torch.zeros(c, dtype=torch.float32, device=device)

    @property
    def buffers(self) -> dict[str, torch.Tensor]:
        """Every per-row tensor by name (the pool moves, saves and restores rows of all of them together)."""
        names = ("steps", "depth", "halt_on_q", "streak", "changed_at", "deltas", "residual")
        return {name: getattr(self, name) for name in names}

    def start(self, rows: slice, depth: torch.Tensor, halt_on_q: torch.Tensor) -> None:
        """Fresh trajectories in ``rows``: nothing run, nothing scored."""
        self.steps[rows] = 0
        self.depth[rows] = depth
        self.halt_on_q[rows] = halt_on_q
        self.streak[rows] = 0
        self.changed_at[rows] = 0
        self.deltas[rows] = 0
        self.residual[rows] = math.inf

    def update(self, n: int, out: StepOutput) -> torch.Tensor:
        """Fold rows ``[0, n)``'s iteration in; their :class:`Leave` codes (int8, on the device)."""
        rule = self.rule
        steps = self.steps[:n]
        steps += 1
        self.residual[:n] = out.residual
        # ring buffer of the last w changes between iterations: iteration t >= 2 writes column
        # (t-2) % w. Iteration 1 has no previous logits to differ from (eqr.md §5.3): it writes a 0
        # into a ring that is still all zeros, and scores() does not count it
        ring = (steps - 2) % self.score_window
        delta = torch.where(steps > 1, out.logit_delta.float(), 0.0)
        self.deltas[:n].scatter_(1, ring.unsqueeze(1), delta.unsqueeze(1))
        self.changed_at[:n] = rule.update_changed_at(self.changed_at[:n], out.pred_change, steps)
        streak = rule.update_streak(self.streak[:n], out.pred_change, out.residual)
        self.streak[:n] = streak
        halt_on_q = self.halt_on_q[:n]
        code = torch.where(steps >= self.depth[:n], int(Leave.DEPTH), int(Leave.STAY))
        code = torch.where(halt_on_q & (out.q_halt > 0), int(Leave.HALTED), code)
        code = torch.where(~halt_on_q & rule.converged(streak), int(Leave.CONVERGED), code)
        return code.to(torch.int8)

    def scores(self, idx: torch.Tensor) -> torch.Tensor:
        """The paper's convergence score of rows ``idx``: mean logit change over the last
        ``score_window`` iterations (lower = settled). After one iteration no change is recorded and
        the score is 0, as the official evaluator scores a trajectory that halts at its first step
        (``sum / max(count, 1)``, docs/paper-protocol.md); inf only before any iteration."""
        return self.score(self.steps[idx], self.deltas[idx])

    def score(self, steps: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        """:meth:`scores` of rows given by their ``steps`` and ``deltas`` (rows of the pool, or saved ones)."""
        count = (steps - 1).clamp(min=0, max=self.score_window)  # changes recorded so far
        return torch.where(steps > 0, deltas.sum(dim=1) / count.clamp(min=1), math.inf)
