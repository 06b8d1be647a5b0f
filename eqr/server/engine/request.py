"""The engine's view of a job: a :class:`Request` and its :class:`Trajectory` objects.

A request holds one trajectory per unit of breadth, each with an explicit status, and the
breadth aggregation that turns finished trajectories into a :class:`~eqr.server.jobs.SolveResult`.
Only the engine thread mutates them. The wire types themselves live in :mod:`eqr.server.jobs`.

Policies beyond the paper, each opt-in per request (or a model's default): a **budget** caps the
iterations of all its trajectories together (each gets a share of what is left when it starts);
**verified mode** checks each finished answer with the task's ``verify``: one that fails is
followed by a fresh trajectory (a restart, next in the seed sequence) while the budget lasts, and
the first that passes ends the request; **breadth on demand** makes ``breadth`` a cap: only
``quorum`` trajectories start, and one more is released only when those finished cannot make a
quorum with the ones still running. Without them a request is pure EqR.
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

from eqr.kernels.rng import puzzle_key, trajectory_seed, trajectory_seeds
from eqr.model.aggregate import aggregate
from eqr.model.tasks.base import Task
from eqr.server.jobs import IterationEvent, Job, SolveResult, Status

# breadth on demand's quorum when the request sets none: two agreeing trajectories settle it, so an
# easy puzzle costs two trajectories whatever breadth it asked for
ON_DEMAND_QUORUM = 2


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
    depth: int = 0  # its iteration cap, set when it gets a slot (the request's depth, or less of a budget)
    verified: bool = False  # verified mode: its answer passed the task's verify
    started: bool = False  # it got a slot (a restart queued after the request had its answer never does)
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
        task: Task,
        verify: bool = False,
        budget: int | None = None,
        breadth_mode: str = "fixed",
    ) -> None:
        """``task``: the model's task; its rule check is reported in every result and, with ``verify``,
        steers the request (restarts, early end); ``budget``: the most iterations of all its trajectories."""
        p = job.params
        self.job = job
        self.id = job.id
        self.depth = depth
        self.noise = noise
        self.seed = seed
        self.aggregate = aggregate  # the breadth aggregation rule's name (the request's, else the model's)
        self.on_demand = breadth_mode == "on_demand"
        self.quorum = p.quorum if p.quorum is not None or not self.on_demand else min(ON_DEMAND_QUORUM, p.breadth)
        self.priority = p.priority
        self.halt_on_q = p.halt == "q_halt"
        self.stream_every = p.stream_every
        self.deadline = deadline  # time.monotonic() value, or None
        self.arrival = arrival  # time.monotonic() at submission, for aging
        self.on_event = on_event
        self.tokens = np.asarray(job.tokens, dtype=np.int64)
        self.task = task
        self.verify_mode = verify
        self.budget = budget
        self.breadth = p.breadth
        # trajectories that may start: all of them, or under breadth on demand a quorum's worth at first
        self.released = min(self.quorum, p.breadth) if self.on_demand else p.breadth
        self.future: Future[SolveResult] = Future()
        self.future.set_running_or_notify_cancel()  # cancel through Engine.cancel, never the future
        self.status = RequestStatus.WAITING
        self.key = puzzle_key(self.tokens)
        seeds = trajectory_seeds(seed, self.key, p.breadth)
        self.trajectories = [Trajectory(self, k, s) for k, s in enumerate(seeds)]
        self.next_waiting = 0  # trajectories are admitted in index order
        self.live: set[Trajectory] = set()
        self.ticks = 0  # engine steps in which this request had a live trajectory (drives streaming)
        self.queue_key: tuple[float, int] = (0.0, 0)  # its place in the scheduler's queue, set once on arrival
        self.queued = False  # in the scheduler's queue now (a restart may put it back)
        self.started_wall: float | None = None

    @property
    def waiting(self) -> int:
        """Trajectories still waiting for a slot."""
        return 0 if self.status is RequestStatus.FINISHED else self.released - self.next_waiting

    @property
    def committed(self) -> int:
        """Iterations spent or promised: what ended trajectories ran plus the caps of the live ones."""
        return sum(t.depth if t.status is TrajectoryStatus.RUNNING else t.iterations for t in self.trajectories)

    def take(self, n: int) -> list[Trajectory]:
        """The next ``n`` waiting trajectories (fewer if fewer wait), marked RUNNING with their caps.

        Under a budget each gets an equal share of what is left among the trajectories not started yet
        (at most the request's depth), so breadth B with budget N runs B trajectories of N/B; once
        nothing is left the waiting ones are dropped without running.
        """
        taken = []
        while len(taken) < n and self.next_waiting < self.released:
            t = self.trajectories[self.next_waiting]
            unstarted = self.released - self.next_waiting
            self.next_waiting += 1
            left = self.depth
            if self.budget is not None:
                rest = self.budget - self.committed
                left = min(left, max(rest // unstarted, 1) if rest > 0 else 0)
            if left < 1:
                t.status = TrajectoryStatus.DROPPED
                continue
            t.status, t.depth, t.started = TrajectoryStatus.RUNNING, left, True
            self.live.add(t)
            taken.append(t)
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

    def check(self, t: Trajectory) -> bool:
        """Verified mode, after ``t`` finished: verify its answer; when it fails and budget is left,
        queue a fresh trajectory. True when one was queued (the scheduler then has one more waiting)."""
        t.verified = t.answer is not None and self.task.verify(self.tokens, np.asarray(t.answer)) is True
        left = self.budget is None or self.committed < self.budget
        if not left or any(s.verified for s in self.trajectories):
            return False
        index = len(self.trajectories)
        self.trajectories.append(Trajectory(self, index, trajectory_seed(self.seed, self.key, index)))
        self.released += 1
        return True

    def widen(self) -> int:
        """Breadth on demand, after a trajectory finished: release as many more as a quorum still needs
        beyond those running or waiting (the cap permitting). Returns how many were released."""
        if self.quorum is None or self.done:
            return 0
        counts = Counter(t.answer for t in self.trajectories if t.status is TrajectoryStatus.FINISHED)
        need = self.quorum - max(counts.values(), default=0)
        pending = len(self.live) + self.released - self.next_waiting
        more = max(0, min(need - pending, self.breadth - self.released))
        self.released += more
        return more

    def _listed(self, t: Trajectory) -> bool:
        """A trajectory that never started still shows (0 iterations) when its breadth was fixed."""
        return not self.on_demand and t.index < self.breadth

    @property
    def restarts(self) -> int:
        """Restarts that ran: trajectories beyond the request's breadth that got a slot."""
        return sum(t.started for t in self.trajectories[self.breadth :])

    def quorum_answer(self) -> tuple[int, ...] | None:
        """An answer given by at least ``quorum`` finished trajectories, if any (the most given)."""
        if self.quorum is None:
            return None
        counts = Counter(t.answer for t in self.trajectories if t.status is TrajectoryStatus.FINISHED)
        best = max(counts.items(), key=lambda kv: kv[1], default=None)
        return best[0] if best is not None and best[1] >= self.quorum else None

    @property
    def done(self) -> bool:
        """Nothing left worth computing: every trajectory ended, a quorum agrees, or an answer is verified."""
        ended = (TrajectoryStatus.FINISHED, TrajectoryStatus.DROPPED)
        if all(t.status in ended for t in self.trajectories[: self.released]) and (
            self.released == len(self.trajectories) or not self.on_demand
        ):
            return True
        if not self.live and self.budget is not None and self.committed >= self.budget:
            return True  # the waiting ones would get no iterations
        return any(t.verified for t in self.trajectories) or self.quorum_answer() is not None

    def finish(self, status: Status | None = None, error: str | None = None) -> SolveResult:
        """Mark the request finished and aggregate its answers; ``status`` overrides what the answer says
        (verified, else converged or max_iterations).

        Candidates are the trajectories with an answer: finished ones, plus the best-so-far state
        of those dropped mid-run (deadline, cancel). When a quorum agrees, its answer wins and the
        aggregation rule only picks which of the agreeing trajectories reports it.
        """
        self.status = RequestStatus.FINISHED
        now = time.time()
        started = self.started_wall if self.started_wall is not None else now
        answered = [t for t in self.trajectories if t.answer is not None]
        quorum = self.quorum_answer()
        agreeing = [t for t in answered if t.answer == quorum] if quorum is not None else answered
        pool = [t for t in answered if t.verified] or agreeing  # verified mode prefers a verified answer
        if pool:
            pick = aggregate(self.aggregate, [t.answer for t in pool], [t.score for t in pool])
            chosen = pool[pick.index]
            answer = np.asarray(chosen.answer, dtype=np.int64)  # keeps the givens (SlotPool.snapshot)
            agreement = sum(t.answer == chosen.answer for t in answered) / len(answered)
            converged = chosen.converged
        else:  # nothing ran: the givens are the best we know
            chosen, answer, agreement, converged = None, self.tokens, 0.0, False
        if status is None:
            status = _status(chosen, converged)
        return SolveResult(
            request_id=self.id,
            status=status,
            answer=[int(t) for t in answer],
            valid=self.task.verify(self.tokens, answer),
            verified=(chosen is not None and chosen.verified) if self.verify_mode else None,
            restarts=self.restarts,
            iterations=[t.iterations for t in self.trajectories if t.started or self._listed(t)],
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


def _status(chosen: Trajectory | None, converged: bool) -> Status:
    """What happened to a request that ended with its answer: verified (whether its trajectory converged
    or was stopped by the restart schedule), else converged, else its iterations ran out."""
    if chosen is not None and chosen.verified:
        return Status.VERIFIED
    return Status.CONVERGED if converged else Status.MAX_ITERATIONS
