"""The slot pool: fixed-capacity device buffers holding the state of every live trajectory.

Live trajectories always occupy the prefix ``[0, live)``. When slots are released, the last live
rows move into the holes (a few row copies, only when something leaves), so the model step runs
on contiguous views ``[:live]``: no gather/scatter per step and no work spent on empty rows. On a
CPU the step costs time in proportion to its rows (measured: ~3.5 ms per row for the bundled
model, against ~0.3 ms to copy a full 64-row pool), so skipping empty rows is what matters; the
buffers never change size, so a CUDA-graph runner can later capture the step for a few padded
prefix lengths and reuse these same buffers as its static inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch

from eqr.server.engine.request import Trajectory

InitState = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class Snapshot(NamedTuple):
    """The current state of some slots, on the host: what a trajectory would answer now."""

    preds: np.ndarray  # [k, seq_len] token ids of the latest prediction
    scores: np.ndarray  # [k] mean logit change over the last `score_window` iterations (inf before the second)
    residuals: np.ndarray  # [k] latest relative latent residual (inf before the first)
    changed_at: np.ndarray  # [k] iteration at which the prediction last changed (0 before the first)


class SlotPool:
    """Per-slot tensors (``capacity`` rows each) and which trajectory owns which row."""

    def __init__(
        self,
        capacity: int,
        seq_len: int,
        vocab_size: int,
        score_window: int,
        init_state: InitState,
        device: torch.device,
    ) -> None:
        self.capacity = capacity
        self.score_window = score_window
        self.device = device
        self._init_state = init_state
        z_H, z_L = init_state(torch.zeros(1, dtype=torch.long, device=device))  # shapes and dtype of the latents
        c, long = capacity, torch.long
        self.z_H = torch.zeros(c, *z_H.shape[1:], dtype=z_H.dtype, device=device)
        self.z_L = torch.zeros(c, *z_L.shape[1:], dtype=z_L.dtype, device=device)
        self.tokens = torch.zeros(c, seq_len, dtype=long, device=device)
        self.seeds = torch.zeros(c, dtype=long, device=device)
        self.steps = torch.zeros(c, dtype=long, device=device)  # iterations run; keys the noise
        self.noise = torch.zeros(c, dtype=torch.float32, device=device)
        self.depth = torch.zeros(c, dtype=long, device=device)
        self.halt_on_q = torch.zeros(c, dtype=torch.bool, device=device)
        self.prev_logits = torch.zeros(c, seq_len, vocab_size, dtype=z_H.dtype, device=device)
        self.prev_pred = torch.zeros(c, seq_len, dtype=long, device=device)
        self.streak = torch.zeros(c, dtype=long, device=device)
        self.changed_at = torch.zeros(c, dtype=long, device=device)  # iteration of the last prediction change
        self.deltas = torch.zeros(c, score_window, dtype=torch.float32, device=device)  # ring of logit deltas
        self.residual = torch.zeros(c, dtype=torch.float32, device=device)
        self._buffers = [
            self.z_H,
            self.z_L,
            self.tokens,
            self.seeds,
            self.steps,
            self.noise,
            self.depth,
            self.halt_on_q,
            self.prev_logits,
            self.prev_pred,
            self.streak,
            self.changed_at,
            self.deltas,
            self.residual,
        ]
        self.owners: list[Trajectory] = []  # owners[i] runs in row i; len(owners) == live

    @property
    def live(self) -> int:
        return len(self.owners)

    @property
    def free(self) -> int:
        return self.capacity - len(self.owners)

    def assign(self, trajectories: Sequence[Trajectory]) -> None:
        """Give each trajectory the next free row, with fresh latents drawn from its seed."""
        n, k = self.live, len(trajectories)
        if k > self.capacity - n:
            raise ValueError(f"{k} trajectories do not fit in {self.capacity - n} free slots")
        rows, dev = slice(n, n + k), self.device
        requests = [t.request for t in trajectories]
        seeds = torch.tensor([t.seed for t in trajectories], dtype=torch.long, device=dev)
        self.seeds[rows] = seeds
        self.tokens[rows] = torch.from_numpy(np.stack([r.tokens for r in requests])).to(dev)
        self.noise[rows] = torch.tensor([r.noise for r in requests], dtype=torch.float32, device=dev)
        self.depth[rows] = torch.tensor([r.depth for r in requests], dtype=torch.long, device=dev)
        self.halt_on_q[rows] = torch.tensor([r.halt_on_q for r in requests], dtype=torch.bool, device=dev)
        self.z_H[rows], self.z_L[rows] = self._init_state(seeds)
        self.steps[rows] = 0
        self.prev_logits[rows] = 0  # the first iteration's delta is not scored (runner.py)
        self.prev_pred[rows] = -1  # never a prediction, so the first iteration always counts as a change
        self.streak[rows] = 0
        self.changed_at[rows] = 0
        self.deltas[rows] = 0
        self.residual[rows] = math.inf
        for i, t in enumerate(trajectories):
            t.slot = n + i
        self.owners.extend(trajectories)

    def release(self, rows: Sequence[int]) -> None:
        """Free ``rows`` and keep the live rows a prefix by moving the last live rows into the holes."""
        gone = set(rows)
        n = self.live
        keep = n - len(gone)
        holes = sorted(r for r in gone if r < keep)
        movers = [r for r in range(keep, n) if r not in gone]  # as many as holes
        if holes:
            dst = torch.tensor(holes, device=self.device)
            src = torch.tensor(movers, device=self.device)
            for buf in self._buffers:
                buf[dst] = buf[src]
            for h, m in zip(holes, movers, strict=True):
                owner = self.owners[m]
                owner.slot = h
                self.owners[h] = owner
        del self.owners[keep:]

    def snapshot(self, rows: Sequence[int]) -> Snapshot:
        """Latest prediction, convergence score, residual and last change of ``rows``, copied to the host."""
        idx = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        count = (self.steps[idx] - 1).clamp(min=0, max=self.score_window)  # changes recorded so far
        scores = torch.where(count > 0, self.deltas[idx].sum(dim=1) / count.clamp(min=1), math.inf)
        return Snapshot(
            self.prev_pred[idx].cpu().numpy(),
            scores.cpu().numpy(),
            self.residual[idx].float().cpu().numpy(),
            self.changed_at[idx].cpu().numpy(),
        )
