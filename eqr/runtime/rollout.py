"""Rollouts of many trajectories offline: the core of evaluation, offline solving and training probes.

A rollout is the serving engine without a queue: the same slot pool, runner, convergence tracker
and step. Trajectories fill the pool's slots; a trajectory leaves when the convergence rule holds
(its answer and score are frozen there, as the engine answers when it evicts) or when ``depth``
is spent, and the next waiting trajectory takes its slot. Answers are recorded at chosen depths,
so one run to depth 64 also answers depth 1, 4 and 16. (The paper's protocol instead reads every
trajectory at the full depth, which can differ when a converged board later drifts.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from eqr.model.convergence import ConvergenceRule
from eqr.model.network import EqRNetwork
from eqr.model.step import StepOutput
from eqr.runtime.runner import Runner
from eqr.runtime.slots import Allowed, SlotPool
from eqr.runtime.step import make_step
from eqr.runtime.tracker import Leave

# called after every iteration with (trajectory index per live row, iteration index per row from 0, output)
Observer = Callable[[np.ndarray, np.ndarray, StepOutput], None]


@dataclass
class Rollout:
    depths: list[int]
    preds: torch.Tensor  # [len(depths), N, S] token ids
    scores: torch.Tensor  # [len(depths), N] mean logit change over the last `score_window` steps (lower = settled)
    converged_at: torch.Tensor  # [N] iteration at which the answer it converged on appeared (depth+1 if never)
    detected_at: torch.Tensor  # [N] iteration at which the convergence rule held (depth+1 if never): its cost


@dataclass(eq=False)
class _Row:
    """A rollout trajectory's slot owner."""

    index: int
    started: int  # the rollout's clock when it got its slot
    slot: int = -1


def rollout(
    model: EqRNetwork,
    tokens: torch.Tensor,
    seeds: Sequence[int] | torch.Tensor,
    depth: int,
    noise: float,
    snapshots: Sequence[int] | None = None,
    rule: ConvergenceRule | None = None,
    batch_size: int = 256,
    progress: bool = False,
    observe: Observer | None = None,
    allowed: Allowed | None = None,
) -> Rollout:
    """Run ``tokens`` [N, S] (one row per trajectory, ``seeds`` [N]) for up to ``depth`` iterations
    in ``batch_size`` slots; answers keep the puzzles' givens as the engine's do (``allowed``: the
    task's, see :meth:`eqr.model.tasks.base.Task.allowed`; None reads the raw predictions).

    ``observe`` sees every iteration's output, for studies that need the whole trajectory (pass a
    rule that never holds, e.g. ``window > depth``, to keep every trajectory to the full depth).
    """
    rule = rule or ConvergenceRule()
    depths = sorted(set(snapshots or [depth]))
    if depths[-1] > depth or depths[0] < 1:
        raise ValueError("snapshot depths must lie in 1..depth")
    n, s = tokens.shape
    seeds = [int(x) for x in seeds]
    device = next(model.parameters()).device
    pool = SlotPool(min(batch_size, n), s, model.cfg.vocab_size, rule, model.initial_state, device, allowed)
    runner = Runner(make_step(model, pool.batch()), pool)
    preds = torch.zeros(len(depths), n, s, dtype=torch.long)
    scores = torch.full((len(depths), n), float("inf"))
    converged_at = torch.full((n,), depth + 1, dtype=torch.long)
    detected_at = torch.full((n,), depth + 1, dtype=torch.long)
    snapshot_at = {d: k for k, d in enumerate(depths)}
    token_rows = tokens.numpy()
    waiting, clock = 0, 0
    bar = tqdm(total=n * depth, desc="rollout", unit="it", disable=not progress)
    while waiting < n or pool.live:
        take = min(pool.free, n - waiting)
        if take:
            owners = [_Row(i, clock) for i in range(waiting, waiting + take)]
            idx = slice(waiting, waiting + take)
            pool.assign(owners, seeds[idx], token_rows[idx], [noise] * take, [depth] * take, [False] * take)
            waiting += take
        hook = None
        if observe is not None:
            rows = np.array([o.index for o in pool.owners])
            its = clock - np.array([o.started for o in pool.owners])
            hook = lambda out, rows=rows, its=its: observe(rows, its, out)  # noqa: E731
        codes = runner.run(hook)
        clock += 1
        bar.update(pool.live)
        iterations = clock - np.array([o.started for o in pool.owners])
        due = np.flatnonzero(codes | np.isin(iterations, depths))  # leaving, or at a snapshot depth
        if due.size == 0:
            continue
        snap = pool.snapshot(due.tolist())
        for i, row in enumerate(due.tolist()):
            owner, it, code = pool.owners[row], int(iterations[row]), int(codes[row])
            pred, score = torch.from_numpy(snap.preds[i]), float(snap.scores[i])
            # leaving: its answer stands for every later snapshot depth; else only this one's
            later = [k for d, k in snapshot_at.items() if d >= it] if code else [snapshot_at[it]]
            for k in later:
                preds[k, owner.index] = pred
                scores[k, owner.index] = score
            if code in (Leave.CONVERGED, Leave.HALTED):
                detected_at[owner.index] = it
                converged_at[owner.index] = int(snap.changed_at[i])
        leaving = np.flatnonzero(codes)
        if leaving.size:
            bar.update((depth - iterations[leaving]).sum())  # what converging early saved
            pool.release(leaving.tolist())
    bar.close()
    return Rollout(depths=depths, preds=preds, scores=scores, converged_at=converged_at, detected_at=detected_at)
