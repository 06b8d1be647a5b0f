"""The model runner: one iteration on every live slot of a pool, and the verdict of who leaves.

One call runs the step on the live prefix of the slot pool, writes the new state back into the
pool and folds the step into the pool's convergence tracker. It returns one :class:`Leave` code
per slot on the host, the one device-to-host copy of a step that nothing leaves. The engine and
the offline rollouts both drive it; what to do with the codes is theirs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from eqr.model.step import StepOutput, Stepper
from eqr.runtime.slots import SlotPool


class Runner:
    """Calls ``stepper.iterate`` on the live slots of ``pool``."""

    def __init__(self, stepper: Stepper, pool: SlotPool) -> None:
        self.stepper = stepper
        self.pool = pool

    def run(self, observe: Callable[[StepOutput], None] | None = None) -> np.ndarray:
        """Advance rows ``[0, live)`` by one iteration; their :class:`Leave` codes (int8, host).

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
        return p.tracker.update(n, out).cpu().numpy()
