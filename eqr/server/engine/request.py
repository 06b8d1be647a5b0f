"""The engine's view of a job: a :class:`Request` and its :class:`Trajectory` objects.

A request holds its resolved :class:`~eqr.server.engine.plan.Plan`, the policies it turns on
(:mod:`eqr.server.engine.policies`), one trajectory per unit of breadth started so far (restarts
and on-demand breadth add more), each with an explicit status, and the aggregation that turns the
finished ones into a :class:`~eqr.server.jobs.SolveResult`. Trajectory ``k`` always has seed
``trajectory_seed(seed, puzzle, k)``, whichever policy started it. Only the engine thread mutates
them. The wire types themselves live in :mod:`eqr.server.jobs`.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from eqr.kernels.rng import puzzle_key, trajectory_seed
from eqr.model.tasks.base import Task
from eqr.server.engine.plan import Plan
from eqr.server.engine.policies import Policy, pick, policies_for
from eqr.server.jobs import IterationEvent, Job, SolveResult, Status


class TrajectoryStatus(str, enum.Enum):
    WAITING = "waiting"  # queued, no slot yet
    RUNNING = "running"  # holds a slot
    PREEMPTED = "preempted"  # left its slot with its whole state saved; resumes where it stopped
    FINISHED = "finished"  # left its slot with an answer (converged, halted or out of depth)
    DROPPED = "dropped"  # ended without finishing (cancel, deadline, quorum reached, failure)


@dataclass(eq=False)  # identity semantics: trajectories live in sets
class Trajectory:
    """One random start of a request: its seed, where it runs, and what it answered."""

    request: Request
    index: int
    seed: int
    status: TrajectoryStatus = TrajectoryStatus.WAITING
    depth: int = 0  # its iteration cap, set when it gets a slot (the policies' caps)
    restart: bool = False  # started by verified mode after a failed answer (not part of the breadth)
    # a restart that keeps what is right (``restart: renoise``): the failed trajectory whose final latents it
    # starts from, and the cells [seq_len] whose latents it draws fresh from its own seed; None: fresh latents
    base: Trajectory | None = None
    renoise: np.ndarray | None = None
    verified: bool = False  # verified mode: its answer passed the task's verify
    started: bool = False  # it got a slot (a restart queued after the request had its answer never does)
    slot: int = -1  # row in the slot pool while RUNNING (the runner keeps it)
    started_at_step: int = 0  # engine iteration clock when it got (or got back) its slot
    attained: int = 0  # iterations run before its last preemption
    iterations: int = 0  # fixed when it leaves its slot
    answer: tuple[int, ...] | None = None  # predicted token ids (a partial state for DROPPED ones)
    score: float = math.inf  # convergence score at its last iteration
    # set when it left because the convergence rule (or the learned halt) held: the iteration at
    # which the answer it converged on first appeared (the rule confirms it `window` iterations later)
    settled_at: int | None = None

    @property
    def converged(self) -> bool:
        return self.settled_at is not None

    def ran(self, clock: int) -> int:
        """Iterations run by engine iteration clock ``clock`` (every stint, preempted or not)."""
        return self.attained + (clock - self.started_at_step if self.status is TrajectoryStatus.RUNNING else 0)


class RequestStatus(str, enum.Enum):
    WAITING = "waiting"  # no trajectory has a slot yet
    RUNNING = "running"
    FINISHED = "finished"


class Request:
    """A job with its plan, its policies, its trajectories and its future.

    The plan is resolved in the submitting thread, so the engine thread only ever sees complete,
    validated requests; nothing here reads the job's raw fields.
    """

    def __init__(
        self,
        job: Job,
        plan: Plan,
        *,
        task: Task,
        arrival: float,
        deadline: float | None,
        on_event: Callable[[IterationEvent], None] | None,
    ) -> None:
        """``task``: the model's task, whose rule check every result reports (and verified mode steers by);
        ``arrival`` and ``deadline``: on the engine's clock."""
        self.job = job
        self.id = job.id
        self.plan = plan
        self.task = task
        self.policies: list[Policy] = policies_for(plan, task)
        self.deadline = deadline
        self.arrival = arrival  # for aging
        self.on_event = on_event
        self.tokens = np.asarray(job.tokens, dtype=np.int64)
        self.future: Future[SolveResult] = Future()
        self.future.set_running_or_notify_cancel()  # cancel through Engine.cancel, never the future
        self.status = RequestStatus.WAITING
        self.key = puzzle_key(self.tokens)
        self.trajectories: list[Trajectory] = []
        self.breadth_released = 0  # trajectories of the breadth added so far (restarts aside)
        self.next_waiting = 0  # trajectories are admitted in index order
        self.live: set[Trajectory] = set()  # started and not ended: holding a slot, or preempted
        self.in_slot = 0  # of them, those holding a slot
        self.client = job.client  # who sent it (API key or address): the scheduler's share per client
        self.ended_iterations = 0  # iterations of its trajectories that left
        self.waited = 0.0  # seconds it had work to run and no slot (fair scheduler's aging)
        self.starved_since: float | None = None  # on the engine's clock, while it has work and no slot
        self.ticks = 0  # engine steps in which this request had a live trajectory (drives streaming)
        self.queue_key: tuple[float, int] = (0.0, 0)  # its place in the scheduler's queue, set once on arrival
        self.queued = False  # in the scheduler's queue now (a restart may put it back)
        self.started_wall: float | None = None
        self.release()

    @property
    def seed(self) -> int:
        return self.plan.seed

    @property
    def waiting(self) -> int:
        """Trajectories still waiting for a slot."""
        return 0 if self.status is RequestStatus.FINISHED else len(self.trajectories) - self.next_waiting

    @property
    def committed(self) -> int:
        """Iterations spent or promised: what ended trajectories ran plus the caps of the live ones."""
        return sum(t.depth if t in self.live else t.iterations for t in self.trajectories)

    def add(
        self, *, restart: bool = False, base: Trajectory | None = None, renoise: np.ndarray | None = None
    ) -> Trajectory:
        """One more trajectory, waiting: the next in the seed sequence (``base``, ``renoise``: see
        :class:`Trajectory`)."""
        k = len(self.trajectories)
        t = Trajectory(self, k, trajectory_seed(self.seed, self.key, k), restart=restart, base=base, renoise=renoise)
        self.trajectories.append(t)
        if not restart:
            self.breadth_released += 1
        return t

    def release(self) -> int:
        """Ask every policy for more trajectories (on arrival, and after one finished); how many were added."""
        before = len(self.trajectories)
        for p in self.policies:
            for _ in range(p.release(self)):
                self.add()
        return len(self.trajectories) - before

    def finished(self) -> list[Trajectory]:
        return [t for t in self.trajectories if t.status is TrajectoryStatus.FINISHED]

    def answered(self) -> bool:
        """A policy has the request's answer (a quorum agrees, an answer verified)."""
        return any(p.answered(self) for p in self.policies)

    def exhausted(self) -> bool:
        """A policy allows no more compute (the budget is spent)."""
        return any(p.exhausted(self) for p in self.policies)

    @property
    def done(self) -> bool:
        """Nothing left worth computing: every trajectory ended, the answer is in, or the budget is spent."""
        return (not self.live and not self.waiting) or self.answered() or self.exhausted()

    def take(self, n: int) -> list[Trajectory]:
        """The next ``n`` waiting trajectories (fewer if fewer wait), marked RUNNING with the policies' caps;
        one whose cap is 0 (no budget left) is dropped without running."""
        taken = []
        while len(taken) < n and self.waiting:
            t = self.trajectories[self.next_waiting]
            cap = self.plan.depth
            for p in self.policies:
                cap = p.cap(self, cap)
            self.next_waiting += 1
            if cap < 1:
                t.status = TrajectoryStatus.DROPPED
                continue
            t.status, t.depth, t.started = TrajectoryStatus.RUNNING, cap, True
            self.live.add(t)
            self.in_slot += 1
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
    ) -> int:
        """``t`` leaves its slot at iteration clock ``clock`` with its last prediction (if kept) and score;
        ``settled_at`` is given when it converged (see :attr:`Trajectory.settled_at`). A finished one is
        shown to the policies, which may add trajectories: returns how many."""
        t.iterations = t.ran(clock)
        self.ended_iterations += t.iterations
        if t.status is TrajectoryStatus.RUNNING:
            self.in_slot -= 1
        t.status = TrajectoryStatus.FINISHED if finished else TrajectoryStatus.DROPPED
        t.answer, t.score, t.settled_at = answer, score, settled_at
        self.live.discard(t)
        if not finished:
            return 0
        for p in self.policies:
            p.finished(self, t)
        return self.release()

    def preempt(self, t: Trajectory, clock: int) -> None:
        """``t`` leaves its slot at ``clock`` with its state saved (by the runner)."""
        t.attained = t.ran(clock)
        t.status = TrajectoryStatus.PREEMPTED
        self.in_slot -= 1

    def resume(self, t: Trajectory, clock: int) -> None:
        """``t`` gets a slot back at ``clock``, its saved state restored."""
        t.status, t.started_at_step = TrajectoryStatus.RUNNING, clock
        self.in_slot += 1

    def attained(self, clock: int) -> int:
        """Slot-iterations it has had by ``clock``: its share of the pool so far."""
        return self.ended_iterations + sum(t.ran(clock) for t in self.live)

    def widen(self, spare: int) -> int:
        """Idle slots are offered: the policies may add up to ``spare`` trajectories ahead of need (more
        breadth on demand, restarts ahead of a failed answer); how many were added."""
        added = 0
        for p in self.policies:
            for _ in range(min(p.ahead(self, spare - added), spare - added)):
                self.add(restart=p.ahead_restarts)
                added += 1
        return added

    @property
    def restarts(self) -> int:
        """Restarts that ran: trajectories verified mode added that got a slot."""
        return sum(t.started and t.restart for t in self.trajectories)

    @property
    def spent(self) -> int:
        """Iterations run by all its trajectories so far (restarts included): what it cost."""
        return sum(t.iterations for t in self.trajectories)

    def finish(self, status: Status | None = None, error: str | None = None) -> SolveResult:
        """Mark the request finished and aggregate its answers; ``status`` overrides what the answer says
        (verified, else converged or max_iterations).

        Candidates are the trajectories with an answer: finished ones, plus the best-so-far state
        of those dropped mid-run (deadline, cancel); the policies narrow them (a quorum's answer
        wins, verified mode prefers a verified answer) and the aggregation rule picks among them.
        """
        self.status = RequestStatus.FINISHED
        now = time.time()
        started = self.started_wall if self.started_wall is not None else now
        answered = [t for t in self.trajectories if t.answer is not None]
        pool = answered
        for p in self.policies:
            pool = p.candidates(self, answered, pool)
        if pool:
            chosen = pool[pick(self.plan, pool).index]
            answer = np.asarray(chosen.answer, dtype=np.int64)  # keeps the givens (SlotPool.snapshot)
            agreement = sum(t.answer == chosen.answer for t in answered) / len(answered)
            converged = chosen.converged
        else:  # nothing ran: the givens are the best we know
            chosen, answer, agreement, converged = None, self.tokens, 0.0, False
        if status is None:
            status = _status(chosen, converged)
            if status is not Status.VERIFIED:  # a policy that ended it early says why (verified mode: stuck)
                status = next((s for p in self.policies if (s := p.outcome(self)) is not None), status)
        return SolveResult(
            request_id=self.id,
            status=status,
            answer=[int(t) for t in answer],
            valid=self.task.verify(self.tokens, answer),
            verified=(chosen is not None and chosen.verified) if self.plan.verify else None,
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

    def _listed(self, t: Trajectory) -> bool:
        """A trajectory that never started still shows (0 iterations) when its breadth was fixed."""
        return not self.plan.on_demand and not t.restart

def _status(chosen: Trajectory | None, converged: bool) -> Status:
    """What happened to a request that ended with its answer: verified (whether its trajectory converged
    or was stopped by the restart schedule), else converged, else its iterations ran out."""
    if chosen is not None and chosen.verified:
        return Status.VERIFIED
    return Status.CONVERGED if converged else Status.MAX_ITERATIONS
