"""The slot pool: fixed-capacity device buffers holding the state of every live trajectory.

Live trajectories always occupy the prefix ``[0, live)``. When slots are released, the last live
rows move into the holes (a few row copies, only when something leaves), so the model step runs
on contiguous views ``[:live]``: no gather/scatter per step and no work spent on empty rows. On a
CPU the step costs time in proportion to its rows (measured: ~3.5 ms per row for the bundled
model, against ~0.3 ms to copy a full 64-row pool), so skipping empty rows is what matters. The
buffers never change size or address, so the CUDA-graph step captures on them directly.

Owners are whatever the caller tracks per trajectory (the engine's ``Trajectory``, a rollout's
row record); the pool only keeps their ``slot`` attribute up to date (-1 once released).

Preemption: :meth:`SlotPool.save` copies a row's *whole* state to the host (latents, tokens, seed,
noise scale, previous logits and prediction, the cells' allowed tokens, and every tracker buffer:
iteration count, which keys the counter-based noise, streak, last change, score ring, residual) and
:meth:`SlotPool.restore` puts it back in any free row, so a trajectory resumes exactly where it
stopped: the next iteration is bit-identical to the one it would have run without leaving. Every
saved row has the same size, :attr:`SlotPool.row_bytes`.

A restart that keeps what is right (verified mode's ``restart: renoise``) gets its slot with a saved
row as its base: its latents are the base's, except the cells it re-noises, whose latents are drawn
from its own seed exactly as a fresh start's would be (so the same seed gives the same restart).
Everything else (iteration count, tracker, previous logits) starts fresh.

Answers are read here (:meth:`SlotPool.snapshot`), and read under the puzzle's constraints: each
row holds the mask of tokens its cells may take (the task's ``allowed``, set when it gets its slot),
and a cell whose predicted token is not allowed answers its most likely allowed token. So every
answer the engine verifies, aggregates, streams and returns keeps the puzzle's givens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from eqr.model.convergence import ConvergenceRule
from eqr.model.step import StepBatch, answers
from eqr.runtime.decisions import State
from eqr.runtime.tracker import ConvergenceTracker

InitState = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
Saved = dict[str, torch.Tensor]  # one row of every per-slot buffer, by name, on the host
# puzzle tokens [k, seq_len] -> the tokens each cell may take [k, seq_len, vocab] (None: any), Task.allowed
Allowed = Callable[[np.ndarray], np.ndarray | None]


# what an answer is read from, in :meth:`SlotPool._state`'s order
_READ = ("prev_pred", "allowed", "prev_logits", "steps", "deltas", "residual", "changed_at")


class SlotPool:
    """Per-slot tensors (``capacity`` rows each), their convergence tracker, and which owner holds which row."""

    def __init__(
        self,
        capacity: int,
        seq_len: int,
        vocab_size: int,
        rule: ConvergenceRule,
        init_state: InitState,
        device: torch.device,
        allowed: Allowed | None = None,
    ) -> None:
        """``allowed``: what each cell of a puzzle may answer (``Task.allowed``); None: any token."""
        self.capacity = capacity
        self.device = device
        self._init_state = init_state
        z_H, z_L = init_state(torch.zeros(1, dtype=torch.long, device=device))  # shapes and dtype of the latents
        c, long = capacity, torch.long
        self.tracker = ConvergenceTracker(capacity, rule, device)
        self.z_H = torch.zeros(c, *z_H.shape[1:], dtype=z_H.dtype, device=device)
        self.z_L = torch.zeros(c, *z_L.shape[1:], dtype=z_L.dtype, device=device)
        self.tokens = torch.zeros(c, seq_len, dtype=long, device=device)
        self.seeds = torch.zeros(c, dtype=long, device=device)
        self.noise = torch.zeros(c, dtype=torch.float32, device=device)
        self.prev_logits = torch.zeros(c, seq_len, vocab_size, dtype=z_H.dtype, device=device)
        self.prev_pred = torch.zeros(c, seq_len, dtype=long, device=device)
        self._allowed = allowed
        self.allowed = torch.ones(c, seq_len, vocab_size, dtype=torch.bool, device=device)
        # every per-row tensor by name: the step's inputs, then the tracker's (``steps`` is in both)
        self._buffers: dict[str, torch.Tensor] = {
            **{f: getattr(self.batch(), f) for f in ("z_H", "z_L", "tokens", "seeds", "noise", "prev_logits")},
            "prev_pred": self.prev_pred,
            "allowed": self.allowed,
            **self.tracker.buffers,
        }
        self.row_bytes = sum(b[0].nelement() * b.element_size() for b in self._buffers.values())
        self.owners: list[Any] = []  # owners[i] runs in row i; len(owners) == live

    @property
    def live(self) -> int:
        return len(self.owners)

    @property
    def free(self) -> int:
        return self.capacity - len(self.owners)

    def batch(self, n: int | None = None) -> StepBatch:
        """The step's inputs for rows ``[0, n)`` (all rows by default): views of the pool's own buffers."""
        n = self.capacity if n is None else n
        t = self.tracker
        return StepBatch(
            z_H=self.z_H[:n],
            z_L=self.z_L[:n],
            tokens=self.tokens[:n],
            seeds=self.seeds[:n],
            steps=t.steps[:n],
            noise=self.noise[:n],
            prev_logits=self.prev_logits[:n],
            prev_pred=self.prev_pred[:n],
        )

    def assign(
        self,
        owners: Sequence[Any],
        seeds: Sequence[int],
        tokens: np.ndarray,
        noise: Sequence[float],
        depth: Sequence[int],
        halt_on_q: Sequence[bool],
        bases: Sequence[tuple[Saved, np.ndarray] | None] | None = None,
    ) -> None:
        """Give each owner the next free row (``owner.slot`` is set), with fresh latents drawn from its seed;
        ``bases[i]`` (a saved row and a bool mask [seq_len]): owner ``i`` keeps that row's latents except on
        the masked cells, which get the fresh ones (a puzzle-embedding prefix is kept)."""
        n, k = self.live, len(owners)
        if k > self.capacity - n:
            raise ValueError(f"{k} trajectories do not fit in {self.capacity - n} free slots")
        rows, dev = slice(n, n + k), self.device
        seed_t = torch.tensor(list(seeds), dtype=torch.long, device=dev)
        self.seeds[rows] = seed_t
        self.tokens[rows] = torch.as_tensor(tokens, dtype=torch.long).to(dev)
        mask = self._allowed(np.asarray(tokens)) if self._allowed is not None else None
        self.allowed[rows] = True if mask is None else torch.as_tensor(mask, dtype=torch.bool).to(dev)
        self.noise[rows] = torch.tensor(list(noise), dtype=torch.float32, device=dev)
        z_H, z_L = self._init_state(seed_t)
        if any(b is not None for b in bases or ()):
            z_H, z_L = z_H.clone(), z_L.clone()  # written row by row below
        for i, base in enumerate(bases or ()):
            if base is not None:
                row, cells = base
                prefix = np.zeros(z_H.shape[1] - len(cells), dtype=bool)
                fresh = torch.as_tensor(np.concatenate([prefix, cells]), device=dev)[:, None]
                z_H[i] = torch.where(fresh, z_H[i], row["z_H"].to(dev))
                z_L[i] = torch.where(fresh, z_L[i], row["z_L"].to(dev))
        self.z_H[rows], self.z_L[rows] = z_H, z_L
        self.prev_logits[rows] = 0  # the first iteration's delta is not scored (tracker.py)
        self.prev_pred[rows] = -1  # never a prediction, so the first iteration always counts as a change
        self.tracker.start(
            rows,
            torch.tensor(list(depth), dtype=torch.long, device=dev),
            torch.tensor(list(halt_on_q), dtype=torch.bool, device=dev),
        )
        for i, owner in enumerate(owners):
            owner.slot = n + i
        self.owners.extend(owners)

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
            for buf in self._buffers.values():
                buf[dst] = buf[src]
        for r in gone:
            self.owners[r].slot = -1
        for h, m in zip(holes, movers, strict=True):
            owner = self.owners[m]
            owner.slot = h
            self.owners[h] = owner
        del self.owners[keep:]

    def save(self, rows: Sequence[int]) -> list[Saved]:
        """The whole state of ``rows`` on the host, one :data:`Saved` per row (the rows stay live: release
        them after). One gather per buffer, then a copy per row so each saved row owns its memory."""
        idx = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        gathered = {name: buf[idx].cpu() for name, buf in self._buffers.items()}
        return [{name: t[i].clone() for name, t in gathered.items()} for i in range(len(rows))]

    def restore(self, owners: Sequence[Any], saved: Sequence[Saved]) -> None:
        """Put ``saved`` rows back in the next free rows for ``owners``, exactly as they were saved."""
        n, k = self.live, len(owners)
        if k > self.capacity - n:
            raise ValueError(f"{k} trajectories do not fit in {self.capacity - n} free slots")
        rows = slice(n, n + k)
        for name, buf in self._buffers.items():
            buf[rows] = torch.stack([s[name] for s in saved]).to(self.device)
        for i, owner in enumerate(owners):
            owner.slot = n + i
        self.owners.extend(owners)

    def snapshot(self, rows: Sequence[int]) -> State:
        """Latest prediction, convergence score, residual and last change of ``rows``, in one device-to-host copy."""
        idx = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        return self._state(*(self._buffers[name][idx] for name in _READ))

    def snapshot_saved(self, saved: Sequence[Saved]) -> State:
        """:meth:`snapshot` of saved rows (a preempted trajectory's best-so-far answer)."""
        return self._state(*(torch.stack([s[name] for s in saved]) for name in _READ))

    def _state(
        self,
        pred: torch.Tensor,
        allowed: torch.Tensor,
        logits: torch.Tensor,
        steps: torch.Tensor,
        deltas: torch.Tensor,
        residual: torch.Tensor,
        changed: torch.Tensor,
    ) -> State:
        # token ids, iteration counts and fp32 scores are all exact in float64: pack, copy once, split
        scores = self.tracker.score(steps, deltas)
        pred = answers(pred, allowed, logits)
        packed = (
            torch.cat(
                [pred.double(), *(v.double().unsqueeze(1) for v in (scores, residual, changed))],
                dim=1,
            )
            .cpu()
            .numpy()
        )
        s = self.prev_pred.shape[1]
        return State(
            packed[:, :s].astype(np.int64),
            packed[:, s].astype(np.float32),
            packed[:, s + 1].astype(np.float32),
            packed[:, s + 2].astype(np.int64),
        )
