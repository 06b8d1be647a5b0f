"""The model runner: applies the scheduler's decisions to the slot pool and runs one iteration on it.

:meth:`Runner.apply` evicts and admits what a :class:`~eqr.runtime.decisions.Decision` says (reading
the state of the evicted trajectories that asked for it first); :meth:`Runner.run` runs the step on
the live prefix of the pool, writes the new state back and folds it into the pool's convergence
tracker, and reports the trajectories that leave with their :class:`Leave` codes, the one
device-to-host copy of a step that nothing leaves; :meth:`Runner.read` copies the state of some
trajectories to the host in one copy. What to do with them is the scheduler's.

Preempted trajectories' state waits in :attr:`Runner.saved` (host memory, :attr:`Runner.saved_bytes`)
until a decision resumes them or ends them; the scheduler bounds how many there may be. The final state
of a trajectory that a restart starts from (``restart: renoise``) waits in :attr:`Runner.kept` until
that restart is admitted or forgotten.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from eqr.model.step import StepOutput, Stepper
from eqr.runtime.decisions import Decision, Leave, State
from eqr.runtime.slots import Saved, SlotPool


class Runner:
    """Calls ``stepper.iterate`` on the live slots of ``pool``."""

    def __init__(self, stepper: Stepper, pool: SlotPool) -> None:
        self.stepper = stepper
        self.pool = pool
        self.saved: dict[Any, Saved] = {}  # preempted owners' state, on the host
        self.kept: dict[Any, Saved] = {}  # the state a restart starts from, by the restart, on the host

    @property
    def saved_bytes(self) -> int:
        return len(self.saved) * self.pool.row_bytes

    def apply(self, decision: Decision) -> State | None:
        """Read, save the preempted, keep what restarts start from, free the slots (and saved state) of the
        evicted, resume, admit; the state of ``decision.read`` as it was before they left (None: none asked)."""
        p = self.pool
        state = self.read(decision.read) if decision.read else None
        if decision.preempt:
            for owner, row in zip(decision.preempt, p.save([o.slot for o in decision.preempt]), strict=True):
                self.saved[owner] = row
        if decision.keep:
            for (_, later), row in zip(decision.keep, p.save([o.slot for o, _ in decision.keep]), strict=True):
                self.kept[later] = row
        for later in decision.forget:
            del self.kept[later]
        gone = [o.slot for o in decision.preempt]
        for o in decision.evict:
            if self.saved.pop(o, None) is None:
                gone.append(o.slot)
        if gone:
            p.release(gone)
        if decision.resume:
            p.restore(decision.resume, [self.saved.pop(o) for o in decision.resume])
        if decision.admit:
            a = decision.admit
            p.assign(
                [x.owner for x in a],
                [x.seed for x in a],
                np.stack([x.tokens for x in a]),
                [x.noise for x in a],
                [x.depth for x in a],
                [x.halt_on_q for x in a],
                [None if x.renoise is None else (self.kept.pop(x.owner), x.renoise) for x in a],
            )
        return state

    def run(self, observe: Callable[[StepOutput], None] | None = None) -> list[tuple[Any, Leave]]:
        """Advance every live trajectory by one iteration; those that leave, with why.

        ``observe`` sees the step's output before the pool takes it in (studies of whole trajectories).
        """
        p, n = self.pool, self.pool.live
        out = self.stepper.iterate(p.batch(n))
        if observe is not None:
            observe(out)
        p.z_H[:n] = out.z_H
        p.z_L[:n] = out.z_L
        p.prev_logits[:n] = out.logits
        p.prev_pred[:n] = out.pred
        codes = p.tracker.update(n, out).cpu().numpy()
        return [(p.owners[row], Leave(int(codes[row]))) for row in np.flatnonzero(codes).tolist()]

    def read(self, owners: Sequence[Any]) -> State:
        """The current state of ``owners`` on the host, in their order (one device-to-host copy); a
        preempted owner's is its saved state."""
        if not any(o in self.saved for o in owners):
            return self.pool.snapshot([o.slot for o in owners])
        live = [o for o in owners if o not in self.saved]
        rows = self.pool.save([o.slot for o in live]) if live else []
        by_owner = dict(zip(live, rows, strict=True))
        return self.pool.snapshot_saved([self.saved.get(o) or by_owner[o] for o in owners])
