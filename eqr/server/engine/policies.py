"""The compute policies of a request, each a small unit the request calls through one interface.

A :class:`Policy` answers, for its request: how many more trajectories to start (on arrival and
after each finished one), how many iterations a starting trajectory may run, what a finished
trajectory means (a restart? more breadth?), whether the request has its answer or no more
compute, and which trajectories the answer is picked from. Every hook's default leaves the request
pure EqR, so a policy implements only what it changes. Torch-free, so tests drive them directly.

Where each policy lives (the scheduler applies them without knowing which are on):

- depth and halting: :class:`DepthAndHalting` (the cap) and the tracker's halt flag (``Plan.halt``);
- breadth and breadth mode: :class:`FixedBreadth`, :class:`OnDemandBreadth`;
- quorum: :class:`Quorum`;
- verified restarts and the restart schedule: :class:`VerifiedRestarts` (the schedule's resolution is
  :func:`eqr.server.engine.plan.restart_schedule`), what a restart starts from: :data:`RESTART_POLICIES`;
- verified mode's early stop: :class:`StuckStop`;
- budget and its split: :class:`Budget`;
- aggregation: :func:`pick`; priority: :func:`queue_key`; deadline: :func:`deadline` (the scheduler's).

Adding a policy: a field in :class:`eqr.server.jobs.SolveParams`, its value in the plan, a unit here
and one line in :func:`policies_for`.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from eqr.model.aggregate import Choice, aggregate
from eqr.model.tasks.base import Task
from eqr.server.jobs import Status

if TYPE_CHECKING:
    from eqr.server.engine.plan import Plan
    from eqr.server.engine.request import Request, Trajectory


class Policy:
    """One compute policy of a request. Hooks are called in the order of :func:`policies_for`."""

    ahead_restarts = False  # what :meth:`ahead` adds: restarts (True) or breadth

    def release(self, r: Request) -> int:
        """Trajectories to add now (called on arrival and after each finished trajectory)."""
        return 0

    def ahead(self, r: Request, spare: int) -> int:
        """Slots would otherwise sit idle: trajectories to add now, ahead of need (work-conserving breadth)."""
        return 0

    def cap(self, r: Request, cap: int) -> int:
        """Narrow the iteration cap of a trajectory about to start (0: it never starts)."""
        return cap

    def finished(self, r: Request, t: Trajectory) -> None:
        """``t`` left its slot with its answer (before :meth:`release` is asked again)."""

    def answered(self, r: Request) -> bool:
        """The request has its answer: its other trajectories are not worth running."""
        return False

    def exhausted(self, r: Request) -> bool:
        """The request may spend nothing more."""
        return False

    def candidates(self, r: Request, answered: list[Trajectory], pool: list[Trajectory]) -> list[Trajectory]:
        """Narrow ``pool`` (initially ``answered``: every trajectory with an answer) to those the answer is
        picked from."""
        return pool

    def outcome(self, r: Request) -> Status | None:
        """The status of a request this policy ended without a verified answer (None: the answer's own)."""
        return None


class DepthAndHalting(Policy):
    """Each trajectory runs at most ``depth`` iterations; it leaves earlier when the convergence rule
    holds or, with ``halt: q_halt``, when the learned halting head says so (the tracker decides that)."""

    def __init__(self, depth: int) -> None:
        self.depth = depth

    def cap(self, r: Request, cap: int) -> int:
        return min(cap, self.depth)


class FixedBreadth(Policy):
    """All ``breadth`` trajectories start (as slots allow)."""

    def __init__(self, breadth: int) -> None:
        self.breadth = breadth

    def release(self, r: Request) -> int:
        return self.breadth - r.breadth_released


class OnDemandBreadth(Policy):
    """``breadth`` is a cap: a quorum's worth starts, and more join only while the finished ones cannot
    make a quorum with the ones still running or waiting."""

    def __init__(self, breadth: int, quorum: int) -> None:
        self.breadth = breadth
        self.quorum = quorum

    def release(self, r: Request) -> int:
        if r.answered() or r.exhausted():
            return 0
        counts = Counter(t.answer for t in r.finished())
        need = self.quorum - max(counts.values(), default=0)
        pending = len(r.live) + r.waiting
        return max(0, min(need - pending, self.breadth - r.breadth_released))

    def ahead(self, r: Request, spare: int) -> int:
        """The rest of the breadth, as idle slots allow: under load nothing is spare, and the frugal
        schedule above is all that runs."""
        if r.answered() or r.exhausted():
            return 0
        return min(spare, self.breadth - r.breadth_released, room(r))


class Quorum(Policy):
    """``quorum`` finished trajectories agreeing settle the request; its answer is theirs."""

    def __init__(self, quorum: int) -> None:
        self.quorum = quorum

    def answer(self, r: Request) -> tuple[int, ...] | None:
        """An answer given by at least ``quorum`` finished trajectories, if any (the most given)."""
        counts = Counter(t.answer for t in r.finished())
        best = max(counts.items(), key=lambda kv: kv[1], default=None)
        return best[0] if best is not None and best[1] >= self.quorum else None

    def answered(self, r: Request) -> bool:
        return self.answer(r) is not None

    def candidates(self, r: Request, answered: list[Trajectory], pool: list[Trajectory]) -> list[Trajectory]:
        agreed = self.answer(r)
        return pool if agreed is None else [t for t in pool if t.answer == agreed]


class Budget(Policy):
    """At most ``budget`` iterations for all the request's trajectories: each starting one gets an equal
    share of what is left among those not started (at most the depth), so breadth B with budget N runs B
    trajectories of N/B; once nothing is left the waiting ones never start."""

    def __init__(self, budget: int) -> None:
        self.budget = budget

    def left(self, r: Request) -> int:
        return self.budget - r.committed

    def cap(self, r: Request, cap: int) -> int:
        rest = self.left(r)
        return min(cap, max(rest // r.waiting, 1) if rest > 0 else 0)  # r.waiting counts the one starting

    def exhausted(self, r: Request) -> bool:
        return not r.live and self.left(r) <= 0


class FullRestart:
    """A restart from fresh latents everywhere (the next seed's): a new random start, as the paper's breadth."""

    def renoised(self, task: Task, puzzle: np.ndarray, failed: Trajectory) -> np.ndarray | None:
        """The cells whose latents a restart after ``failed`` draws fresh, keeping the others' final
        latents; ``None``: it keeps nothing (a full restart)."""
        return None


class Renoise(FullRestart):
    """A restart that keeps what is right, as local search does: it starts from the failed trajectory's
    final latents with only the cells the task finds in conflict (:meth:`Task.conflicts`) drawn fresh from
    the next seed. Why: a board that fails on a few cells is mostly right, and a fresh start throws the
    right part away. A task that cannot say which cells are wrong restarts in full."""

    def renoised(self, task: Task, puzzle: np.ndarray, failed: Trajectory) -> np.ndarray | None:
        mask = task.conflicts(puzzle, np.asarray(failed.answer))
        return mask if mask is not None and mask.any() else None


# the request field ``restart`` (jobs.RESTARTS) names one of these, resolved once per request
RESTART_POLICIES: dict[str, FullRestart] = {"full": FullRestart(), "renoise": Renoise()}


class VerifiedRestarts(Policy):
    """Verified mode: each finished answer is checked with the task's rules; one that fails is followed
    by a restart (the next trajectory of the seed sequence) while the budget lasts, the first that
    passes ends the request and is the answer, and the answer never overwrites a given. What a restart
    starts from is ``restart``'s (:data:`RESTART_POLICIES`). The restart schedule (depth and budget when
    the request names none) is resolved into the plan."""

    def __init__(self, task: Task, restart: FullRestart) -> None:
        self.task = task
        self.restart = restart
        self.failed: list[Trajectory] = []  # finished trajectories whose answers failed, each owed a restart

    def finished(self, r: Request, t: Trajectory) -> None:
        t.verified = t.answer is not None and self.task.verify(r.tokens, np.asarray(t.answer)) is True
        if not t.verified:
            self.failed.append(t)

    def release(self, r: Request) -> int:
        failed, self.failed = self.failed, []
        if self.answered(r) or (r.plan.budget is not None and r.committed >= r.plan.budget):
            return 0
        for t in failed:
            renoise = self.restart.renoised(self.task, r.tokens, t)
            r.add(restart=True, base=t if renoise is not None else None, renoise=renoise)
        return 0  # added here, as restarts: the breadth policy does not count them

    ahead_restarts = True

    def ahead(self, r: Request, spare: int) -> int:
        """Restarts before an answer fails, as idle slots and the budget allow (each with a full depth; no
        answer has failed yet, so they start from fresh latents whatever ``restart`` says)."""
        return 0 if self.answered(r) else min(spare, room(r))

    def answered(self, r: Request) -> bool:
        return any(t.verified for t in r.trajectories)

    def candidates(self, r: Request, answered: list[Trajectory], pool: list[Trajectory]) -> list[Trajectory]:
        return [t for t in answered if t.verified] or pool


class StuckStop(Policy):
    """Verified mode's early stop: once one wrong answer has failed ``repeats`` times, the restarts keep
    landing on the same wrong attractor and more of them seldom pay, so the request spends nothing more and
    ends ``stuck`` with its best-so-far answer. Runs after :class:`VerifiedRestarts`, which marks the answers
    that failed."""

    def __init__(self, repeats: int) -> None:
        self.repeats = repeats
        self.failed: Counter[tuple[int, ...] | None] = Counter()  # how often each wrong answer came back
        self.stuck = False

    def finished(self, r: Request, t: Trajectory) -> None:
        if not t.verified:
            self.failed[t.answer] += 1
            self.stuck = self.stuck or self.failed[t.answer] >= self.repeats

    def exhausted(self, r: Request) -> bool:
        return self.stuck

    def outcome(self, r: Request) -> Status | None:
        return Status.STUCK if self.stuck else None


def room(r: Request) -> int:
    """Trajectories that may still be added at a full depth each within the budget (unbounded without one),
    so trajectories added ahead of need never shorten the cap :class:`Budget` gives the others."""
    if r.plan.budget is None:
        return 1 << 30
    return max(0, (r.plan.budget - r.committed) // r.plan.depth - r.waiting)


def policies_for(plan: Plan, task: Task) -> list[Policy]:
    """The policies a plan turns on, in the order their hooks run."""
    found: list[Policy] = [DepthAndHalting(plan.depth)]
    if plan.verify:  # first: a finished answer is verified before the breadth policy reads the request
        found.append(VerifiedRestarts(task, RESTART_POLICIES[plan.restart]))
        if plan.stuck_after is not None:
            found.append(StuckStop(plan.stuck_after))
    if plan.quorum is not None:
        found.append(Quorum(plan.quorum))
    if plan.budget is not None:
        found.append(Budget(plan.budget))
    found.append(OnDemandBreadth(plan.breadth, plan.quorum or 1) if plan.on_demand else FixedBreadth(plan.breadth))
    return found


def pick(plan: Plan, pool: list[Trajectory]) -> Choice:
    """Aggregation: the plan's rule (most-converged or vote) over the candidates' answers."""
    return aggregate(plan.aggregate, [t.answer for t in pool], [t.score for t in pool])


def queue_key(plan: Plan, arrival: float, aging_per_s: float, seq: int) -> tuple[float, int]:
    """Priority with aging: effective priority is ``priority + aging_per_s x seconds waited``, then arrival.

    All waiting requests age at the same rate, so comparing two effective priorities at any instant
    is comparing ``priority - aging_per_s x arrival``: the order is fixed at arrival and a heap keyed
    once implements aging. A request is overtaken only by later arrivals more than ``aging_per_s x
    (their arrival - its arrival)`` higher in priority, so low priority never starves."""
    return aging_per_s * arrival - plan.priority, seq


def deadline(plan: Plan, submitted_wall: float, now_wall: float, now: float) -> float | None:
    """When the request ends with its best-so-far answer, on the engine's clock (``now``): ``timeout_ms``
    after its submission (``submitted_wall``, wall-clock, so time in a queue before the engine counts)."""
    if plan.timeout_ms is None:
        return None
    return now + (submitted_wall + plan.timeout_ms / 1000.0 - now_wall)
