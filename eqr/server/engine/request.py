"""The engine's view of a job: a :class:`Request` and its :class:`Trajectory` objects.

A request holds one trajectory per unit of breadth, each with an explicit status, and the
breadth aggregation that turns finished trajectories into a :class:`~eqr.server.jobs.SolveResult`.
Only the engine thread mutates them. The wire types themselves live in :mod:`eqr.server.jobs`.
"""

from __future__ import annotations

import enum
import math
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from eqr.kernels.rng import puzzle_key, trajectory_seeds
from eqr.model.aggregate import aggregate
from eqr.server.jobs import IterationEvent, Job, SolveResult, Status


class TrajectoryStatus(str, enum.Enum):
    WAITING = "waiting"  # queued, no slot yet
    RUNNING = "running"  # holds a slot
    FINISHED = "finished"  # left its slot with an answer (converged, halted or out of depth)
    DROPPED = "dropped"  # ended without finishing (cancel, deadline, quorum reached, failure)


@dataclass(eq=False)  # identity semantics: trajectories live in sets
class Trajectory:
    """One random start of a request: its seed, where it runs, and what it answered."""

    request: Request
    index: int
    seed: int
    status: TrajectoryStatus = TrajectoryStatus.WAITING
    slot: int = -1  # row in the slot pool while RUNNING
    started_at_step: int = 0  # engine iteration clock when it got its slot
    iterations: int = 0  # fixed when it leaves its slot
    answer: tuple[int, ...] | None = None  # predicted token ids (a partial state for DROPPED ones)
    score: float = math.inf  # convergence score at its last iteration
    # set when it left because the convergence rule (or the learned halt) held: the iteration at
    # which the answer it converged on first appeared (the rule confirms it `window` iterations later)
    settled_at: int | None = None

    @property
    def converged(self) -> bool:
        return self.settled_at is not None


class RequestStatus(str, enum.Enum):
    WAITING = "waiting"  # no trajectory has a slot yet
    RUNNING = "running"
    FINISHED = "finished"


class Request:
    """A job with its resolved parameters, its trajectories and its future.

    Parameters are resolved against the server's defaults in the submitting thread, so the engine
    thread only ever sees complete, validated requests.
    """

    def __init__(
        self,
        job: Job,
        *,
        depth: int,
        noise: float,
        seed: int,
        aggregate: str,
        deadline: float | None,
        arrival: float,
        on_event: Callable[[IterationEvent], None] | None,
        verify: Callable[[np.ndarray, np.ndarray], bool | None],
    ) -> None:
        """``verify``: the model's task's rule check, reported in the result (never used to steer)."""
        p = job.params
        self.job = job
        self.id = job.id
        self.depth = depth
        self.noise = noise
        self.seed = seed
        self.aggregate = aggregate  # the breadth aggregation rule's name (the request's, else the model's)
        self.quorum = p.quorum
        self.priority = p.priority
        self.halt_on_q = p.halt == "q_halt"
        self.stream_every = p.stream_every
        self.deadline = deadline  # time.monotonic() value, or None
        self.arrival = arrival  # time.monotonic() at submission, for aging
        self.on_event = on_event
        self.tokens = np.asarray(job.tokens, dtype=np.int64)
        self.verify = verify
        self.future: Future[SolveResult] = Future()
        self.future.set_running_or_notify_cancel()  # cancel through Engine.cancel, never the future
        self.status = RequestStatus.WAITING
        seeds = trajectory_seeds(seed, puzzle_key(self.tokens), p.breadth)
        self.trajectories = [Trajectory(self, k, s) for k, s in enumerate(seeds)]
        self.next_waiting = 0  # trajectories are admitted in index order
        self.live: set[Trajectory] = set()
        self.ticks = 0  # engine steps in which this request had a live trajectory (drives streaming)
        self.started_wall: float | None = None

    @property
    def waiting(self) -> int:
        """Trajectories still waiting for a slot."""
        return 0 if self.status is RequestStatus.FINISHED else len(self.trajectories) - self.next_waiting

    def take(self, n: int) -> list[Trajectory]:
        """The next ``n`` waiting trajectories (fewer if fewer wait), marked RUNNING."""
        taken = self.trajectories[self.next_waiting : self.next_waiting + n]
        self.next_waiting += len(taken)
        for t in taken:
            t.status = TrajectoryStatus.RUNNING
            self.live.add(t)
        if taken and self.status is RequestStatus.WAITING:
            self.status = RequestStatus.RUNNING
            self.started_wall = time.time()
        return taken

    def leave(
        self,
        t: Trajectory,
        clock: int,
        answer: tuple[int, ...] | None,
        score: float,
        *,
        finished: bool,
        settled_at: int | None = None,
    ) -> None:
        """``t`` leaves its slot at iteration clock ``clock`` with its last prediction (if kept) and score;
        ``settled_at`` is given when it converged (see :attr:`Trajectory.settled_at`)."""
        t.status = TrajectoryStatus.FINISHED if finished else TrajectoryStatus.DROPPED
        t.iterations = clock - t.started_at_step
        t.answer, t.score, t.settled_at, t.slot = answer, score, settled_at, -1
        self.live.discard(t)

    def quorum_answer(self) -> tuple[int, ...] | None:
        """An answer given by at least ``quorum`` finished trajectories, if any (the most given)."""
        if self.quorum is None:
            return None
        counts = Counter(t.answer for t in self.trajectories if t.status is TrajectoryStatus.FINISHED)
        best = max(counts.items(), key=lambda kv: kv[1], default=None)
        return best[0] if best is not None and best[1] >= self.quorum else None

    @property
    def done(self) -> bool:
        """Every trajectory finished, or a quorum agrees: nothing left worth computing."""
        finished = sum(t.status is TrajectoryStatus.FINISHED for t in self.trajectories)
        return finished == len(self.trajectories) or self.quorum_answer() is not None

    def finish(self, status: Status | None = None, error: str | None = None) -> SolveResult:
        """Mark the request finished and aggregate its answers; ``status`` overrides converged/max_iterations.

        Candidates are the trajectories with an answer: finished ones, plus the best-so-far state
        of those dropped mid-run (deadline, cancel). When a quorum agrees, its answer wins and the
        aggregation rule only picks which of the agreeing trajectories reports it.
        """
        self.status = RequestStatus.FINISHED
        now = time.time()
        started = self.started_wall if self.started_wall is not None else now
        answered = [t for t in self.trajectories if t.answer is not None]
        quorum = self.quorum_answer()
        pool = [t for t in answered if t.answer == quorum] if quorum is not None else answered
        if pool:
            pick = aggregate(self.aggregate, [t.answer for t in pool], [t.score for t in pool])
            chosen = pool[pick.index]
            answer = np.asarray(chosen.answer, dtype=np.int64)
            agreement = sum(t.answer == chosen.answer for t in answered) / len(answered)
            converged = chosen.converged
        else:  # nothing ran: the givens are the best we know
            chosen, answer, agreement, converged = None, self.tokens, 0.0, False
        if status is None:
            status = Status.CONVERGED if converged else Status.MAX_ITERATIONS
        return SolveResult(
            request_id=self.id,
            status=status,
            answer=[int(t) for t in answer],
            valid=self.verify(self.tokens, answer),
            iterations=[t.iterations for t in self.trajectories],
            iterations_to_convergence=chosen.settled_at if chosen is not None else None,
            agreement=agreement,
            convergence_score=chosen.score if chosen is not None else math.inf,
            queued_ms=max(0.0, (started - self.job.submitted_at) * 1000.0),
            compute_ms=max(0.0, (now - started) * 1000.0),
            error=error,
            seed=self.seed,
            model=self.job.model,
            form=self.job.form,
        )
