"""The step contract: what one iteration on a batch of slots takes and gives back.

Every stepper (``EqRNetwork.iterate``, the CPU fast step, the CUDA-graph step, test doubles)
takes one :class:`StepBatch` and returns one :class:`StepOutput`. The inputs travel as named
fields, never as positional tensors: ``seeds`` and ``steps`` are both int64 [B], and swapping two
such arguments would silently change the noise instead of failing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass(frozen=True)
class StepBatch:
    """One iteration's inputs for B slots; in serving, views into the slot pool's own tensors.

    ``seeds``/``steps`` (int64 [B]) key each slot's noise, so a trajectory is reproducible whatever
    else shares the batch; ``noise`` is σ per slot ([B] fp32, 0 disables it). ``prev_logits`` and
    ``prev_pred`` are the previous iteration's outputs (any values for a fresh slot: its first
    deltas are not scored).
    """

    z_H: torch.Tensor  # [B, S_total, D]
    z_L: torch.Tensor  # [B, S_total, D]
    tokens: torch.Tensor  # [B, S_in] int64
    seeds: torch.Tensor  # [B] int64
    steps: torch.Tensor  # [B] int64: iterations this slot has run
    noise: torch.Tensor  # [B] fp32: σ
    prev_logits: torch.Tensor  # [B, S_in, V]
    prev_pred: torch.Tensor  # [B, S_in] int64

    @property
    def size(self) -> int:
        return self.z_H.shape[0]

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The fields in declaration order (for steppers that keep same-shaped buffers)."""
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    def rows(self, stop: int, start: int = 0) -> StepBatch:
        """Rows ``[start, stop)`` of every field, as views."""
        return StepBatch(*(t[start:stop] for t in self.tensors()))

    def advanced(self, out: StepOutput) -> StepBatch:
        """The next iteration's inputs after ``out``, for loops that step a batch outside a slot pool
        (the pool writes its own buffers in place)."""
        return dataclasses.replace(
            self, z_H=out.z_H, z_L=out.z_L, steps=self.steps + 1, prev_logits=out.logits, prev_pred=out.pred
        )


@dataclass
class StepOutput:
    """Result of one iteration on a batch of slots; per-slot reductions are shape [B]."""

    z_H: torch.Tensor
    z_L: torch.Tensor
    logits: torch.Tensor  # [B, S_in, V]
    pred: torch.Tensor  # [B, S_in] argmax token ids
    q_halt: torch.Tensor  # learned "I am solved" logit
    residual: torch.Tensor  # ||z_t - z_{t-1}|| / ||z_{t-1}|| over (z_H, z_L)
    pred_change: torch.Tensor  # cells whose prediction changed this iteration
    logit_delta: torch.Tensor  # mean over cells of the L2 logit change (the paper's convergence delta)

    def rows(self, stop: int) -> StepOutput:
        """The first ``stop`` rows of every field, as views."""
        return StepOutput(**{f.name: getattr(self, f.name)[:stop] for f in dataclasses.fields(self)})


def fresh_batch(
    model: Any, tokens: torch.Tensor, seeds: torch.Tensor, noise: float, steps: torch.Tensor | None = None
) -> StepBatch:
    """A batch of trajectories that have not run yet: initial latents from ``seeds``, no previous
    prediction (for benchmarks and tests that drive a stepper without a slot pool)."""
    b, s = tokens.shape
    z_H, z_L = model.initial_state(seeds)
    return StepBatch(
        z_H=z_H,
        z_L=z_L,
        tokens=tokens,
        seeds=seeds,
        steps=torch.zeros(b, dtype=torch.long, device=tokens.device) if steps is None else steps,
        noise=torch.full((b,), noise, device=tokens.device),
        prev_logits=torch.zeros(b, s, model.cfg.vocab_size, dtype=z_H.dtype, device=tokens.device),
        prev_pred=torch.full((b, s), -1, dtype=torch.long, device=tokens.device),
    )


class Stepper(Protocol):
    """Anything that advances a batch of slots by one iteration."""

    def iterate(self, batch: StepBatch) -> StepOutput: ...


def answers(pred: torch.Tensor, allowed: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The answers [k, seq_len] of rows with these predictions, allowed tokens and logits: each cell's
    predicted token where the puzzle allows it, else its most likely allowed token (a row that has not
    run yet answers garbage)."""
    kept = allowed.gather(2, pred.clamp(min=0).unsqueeze(2)).squeeze(2)
    best = logits.masked_fill(~allowed, -torch.inf).argmax(dim=2)
    return torch.where(kept, pred, best)
