"""The model runner: one iteration on every live slot, and the on-device verdict of who leaves.

This is the only engine file that touches tensors on the hot path. One call runs the model step
on the live prefix of the slot pool, writes the new state back, updates each slot's convergence
bookkeeping (streak, last prediction change, ring buffer of logit deltas) and returns one small code per slot, so a step
costs a single device-to-host copy of ``live`` bytes and no per-slot Python.
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np
import torch

from eqr.model.convergence import ConvergenceRule
from eqr.server.engine.slots import SlotPool


class Leave(enum.IntEnum):
    """Why a slot leaves after this iteration (``STAY``: it does not); also the eviction reason label."""

    STAY = 0
    CONVERGED = 1  # the convergence rule held (prediction stable for `window` iterations, residual < tol)
    HALTED = 2  # learned halting: q_halt > 0 (requests with halt="q_halt")
    DEPTH = 3  # used its depth budget

    @property
    def label(self) -> str:
        return self.name.lower()


class Runner:
    """Calls ``model.iterate`` on the live slots of ``pool``; ``model`` is an EqRNetwork or look-alike."""

    def __init__(self, model: Any, pool: SlotPool, rule: ConvergenceRule) -> None:
        self.model = model
        self.pool = pool
        self.rule = rule

    def run(self) -> np.ndarray:
        """Advance rows ``[0, live)`` by one iteration; return their :class:`Leave` codes (int8, host)."""
        p, n = self.pool, self.pool.live
        out = self.model.iterate(
            p.z_H[:n],
            p.z_L[:n],
            p.tokens[:n],
            p.seeds[:n],
            p.steps[:n],
            p.noise[:n],
            p.prev_logits[:n],
            p.prev_pred[:n],
        )
        p.z_H[:n] = out.z_H
        p.z_L[:n] = out.z_L
        p.prev_logits[:n] = out.logits
        p.prev_pred[:n] = out.pred
        p.residual[:n] = out.residual
        steps = p.steps[:n]
        steps += 1
        # ring buffer of the last w changes between iterations: iteration t >= 2 writes column
        # (t-2) % w. Iteration 1 has no previous logits to differ from (eqr.md §5.3): it writes a 0
        # into a ring that is still all zeros, and the snapshot does not count it
        ring = (steps - 2) % p.score_window
        delta = torch.where(steps > 1, out.logit_delta.float(), 0.0)
        p.deltas[:n].scatter_(1, ring.unsqueeze(1), delta.unsqueeze(1))
        p.changed_at[:n] = self.rule.update_changed_at(p.changed_at[:n], out.pred_change, steps)
        streak = self.rule.update_streak(p.streak[:n], out.pred_change, out.residual)
        p.streak[:n] = streak
        halt_on_q = p.halt_on_q[:n]
        code = torch.where(steps >= p.depth[:n], int(Leave.DEPTH), int(Leave.STAY))
        code = torch.where(halt_on_q & (out.q_halt > 0), int(Leave.HALTED), code)
        code = torch.where(~halt_on_q & self.rule.converged(streak), int(Leave.CONVERGED), code)
        return code.to(torch.int8).cpu().numpy()
