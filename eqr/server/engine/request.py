"""What flows through the engine: a job in, iteration events and one result out.

The plain dataclasses at the top (:class:`Status`, :class:`SolveParams`, :class:`Job`,
:class:`IterationEvent`, :class:`SolveResult`) are the contract between the API/broker layer and
the engine; they carry no tensors so they can cross threads, processes and Redis unchanged.

Below them is the engine's own view of a job: a :class:`Request` and its :class:`Trajectory`
objects (one per unit of breadth), each with an explicit status, and the breadth aggregation that
turns finished trajectories into a :class:`SolveResult`. Only the engine thread mutates them.
"""

from __future__ import annotations

import enum
import math
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from eqr.model.aggregate import aggregate
from eqr.model.tasks.sudoku import from_tokens, is_valid_solution, to_tokens


class Status(str, enum.Enum):
    CONVERGED = "converged"  # the answer came from converged trajectories
    MAX_ITERATIONS = "max_iterations"  # depth budget used without convergence
    DEADLINE = "deadline"  # timeout_ms passed; best-so-far answer
    CANCELLED = "cancelled"
    FAILED = "failed"  # the engine raised; ``error`` says why


@dataclass(frozen=True)
class SolveParams:
    """Per-request budgets and knobs; ``None`` means the model's / server's default."""

    depth: int | None = None
    breadth: int = 1
    aggregate: str = "converged"  # "converged" (most-converged) or "vote"
    quorum: int | None = None  # stop remaining siblings once this many trajectories agree
    noise: float | None = None
    seed: int | None = None
    timeout_ms: int | None = None
    priority: int = 0  # higher runs first; aging prevents starvation
    halt: str = "convergence"  # "convergence" or "q_halt" (learned halting)
    stream_every: int = 1


@dataclass
class Job:
    """One puzzle to solve. ``digits``: 81 ints, 0 = blank (already validated)."""

    digits: list[int]
    params: SolveParams = field(default_factory=SolveParams)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    task: str = "sudoku"
    submitted_at: float = field(default_factory=time.time)


@dataclass
class IterationEvent:
    request_id: str
    iteration: int  # highest iteration reached by any live trajectory of the request
    board: list[int]  # current best board, digits (0 = undecided)
    residual: float
    live_trajectories: int


@dataclass
class SolveResult:
    request_id: str
    status: Status
    answer: list[int]  # digits 1..9 (0 where the model produced a non-digit)
    valid: bool  # answer obeys the rules and keeps the givens (reported, not used to steer)
    iterations: list[int]  # iterations run per trajectory
    # of the chosen trajectory: the iteration at which its answer appeared and then stayed (its
    # `iterations` add the confirmation window); None if it never converged
    iterations_to_convergence: int | None
    agreement: float  # share of trajectories agreeing with the answer
    convergence_score: float  # mean logit change over the last 3 iterations (lower = more settled); inf: none ran
    queued_ms: float
    compute_ms: float
    error: str | None = None
    seed: int | None = None  # the request seed actually used (drawn at random when the job gave none)


def bare_failure(request_id: str, breadth: int, error: str, answer: list[int], seed: int | None = None) -> SolveResult:
    """A ``failed`` result built without aggregation, for when even that cannot run: no iterations."""
    return SolveResult(
        request_id=request_id,
        status=Status.FAILED,
        answer=answer,
        valid=False,
        iterations=[0] * breadth,
        iterations_to_convergence=None,
        agreement=0.0,
        convergence_score=math.inf,
        queued_ms=0.0,
        compute_ms=0.0,
        error=error,
        seed=seed,
    )


# -- the engine's view of a job --------------------------------------------------------------------

_M64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """SplitMix64 finaliser: a bijective 64-bit mixer, so nearby inputs give unrelated outputs."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def trajectory_seed(seed: int, index: int) -> int:
    """Seed of trajectory ``index`` of a request seeded ``seed`` (63 bits, fits an int64 tensor).

    Hashing the pair keeps siblings independent and makes trajectory k of seed s the same
    trajectory whenever and wherever it runs, which is what makes seeded answers reproducible.
    """
    return _mix64(_mix64(seed) ^ index) >> 1


def random_seed() -> int:
    return secrets.randbits(63)


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
        deadline: float | None,
        arrival: float,
        on_event: Callable[[IterationEvent], None] | None,
    ) -> None:
        p = job.params
        self.job = job
        self.id = job.id
        self.depth = depth
        self.noise = noise
        self.seed = seed
        self.rule = p.aggregate
        self.quorum = p.quorum
        self.priority = p.priority
        self.halt_on_q = p.halt == "q_halt"
        self.stream_every = p.stream_every
        self.deadline = deadline  # time.monotonic() value, or None
        self.arrival = arrival  # time.monotonic() at submission, for aging
        self.on_event = on_event
        self.tokens = to_tokens(job.digits)
        self.future: Future[SolveResult] = Future()
        self.future.set_running_or_notify_cancel()  # cancel through Engine.cancel, never the future
        self.status = RequestStatus.WAITING
        self.trajectories = [Trajectory(self, k, trajectory_seed(seed, k)) for k in range(p.breadth)]
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
            pick = aggregate(self.rule, [t.answer for t in pool], [t.score for t in pool])
            chosen = pool[pick.index]
            answer = from_tokens(np.asarray(chosen.answer))
            agreement = sum(t.answer == chosen.answer for t in answered) / len(answered)
            converged = chosen.converged
        else:  # nothing ran: the givens are the best we know
            chosen, answer, agreement, converged = None, list(self.job.digits), 0.0, False
        if status is None:
            status = Status.CONVERGED if converged else Status.MAX_ITERATIONS
        return SolveResult(
            request_id=self.id,
            status=status,
            answer=answer,
            valid=is_valid_solution(self.job.digits, answer),
            iterations=[t.iterations for t in self.trajectories],
            iterations_to_convergence=chosen.settled_at if chosen is not None else None,
            agreement=agreement,
            convergence_score=chosen.score if chosen is not None else math.inf,
            queued_ms=max(0.0, (started - self.job.submitted_at) * 1000.0),
            compute_ms=max(0.0, (now - started) * 1000.0),
            error=error,
            seed=self.seed,
        )
