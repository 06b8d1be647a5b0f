"""What the scheduler decides and the runner applies, as plain data (no torch: the scheduler and its
tests never touch a tensor).

Each step the runner reports which trajectories leave their slots (a :class:`Leave` code each) and
their state on the host (:class:`State`); the scheduler answers with a :class:`Decision`: which
trajectories leave now (and whose current state to read first), which start in the freed slots.
Trajectories are the scheduler's own objects ("owners"); the runner maps them to slot rows, and
keeps the saved state of the preempted ones until they resume or leave.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np


class Leave(enum.IntEnum):
    """Why a slot leaves after this iteration (``STAY``: it does not); also the eviction reason label."""

    STAY = 0
    CONVERGED = 1  # the convergence rule held (prediction stable for `window` iterations, residual < tol)
    HALTED = 2  # learned halting: q_halt > 0 (requests with halt="q_halt")
    DEPTH = 3  # used its depth budget

    @property
    def label(self) -> str:
        return self.name.lower()


class State(NamedTuple):
    """The current state of some slots, on the host: what a trajectory would answer now."""

    preds: np.ndarray  # [k, seq_len] token ids of the latest prediction
    scores: np.ndarray  # [k] mean logit change over the last `score_window` iterations (0 after one, inf before any)
    residuals: np.ndarray  # [k] latest relative latent residual (inf before the first)
    changed_at: np.ndarray  # [k] iteration at which the prediction last changed (0 before the first)


class Admission(NamedTuple):
    """A trajectory to start in a free slot, from fresh latents drawn from its seed (or, with ``renoise``,
    from latents kept for it: see :attr:`Decision.keep`)."""

    owner: Any
    seed: int
    tokens: np.ndarray  # the puzzle's token ids
    noise: float
    depth: int  # its iteration cap
    halt_on_q: bool  # leave when the learned halting head says so (else: the convergence rule)
    # a restart that keeps what is right: the cells [seq_len] whose latents are drawn fresh from ``seed``; the
    # others start from the latents kept for this owner (``Decision.keep``). None: fresh latents everywhere
    renoise: np.ndarray | None = None


@dataclass
class Decision:
    """What the runner does to the slot pool before the next model step: read, preempt, keep, evict, resume,
    admit."""

    evict: Sequence[Any] = ()  # owners leaving for good: their slots, or their saved state, are freed
    read: Sequence[Any] = ()  # owners (among ``evict``) whose state is read before they leave
    admit: Sequence[Admission] = ()
    preempt: Sequence[Any] = ()  # owners leaving their slots with their whole state saved on the host
    resume: Sequence[Any] = ()  # preempted owners going back into free slots, exactly as they left
    # (leaving owner, later owner): the leaving one's final state is kept on the host for the later one, a
    # restart that starts from it (its ``Admission.renoise``); ``forget``: later owners that will never start
    keep: Sequence[tuple[Any, Any]] = ()
    forget: Sequence[Any] = ()
    # the scheduler's own notes, which the runner ignores: the requests these evictions end, and why they failed
    ending: list[Any] = field(default_factory=list)
    error: str | None = None
