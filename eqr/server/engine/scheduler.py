"""The scheduler: who waits, who gets a slot, and who leaves. Every eviction is decided here.

It never touches the device: it returns :class:`~eqr.runtime.decisions.Decision` objects (evict these,
reading the state of those first; admit these) that the runner applies to the slot pool, and learns
what happened from the runner's reports. A step is schedule → run → postprocess:

- :meth:`Scheduler.schedule` (before the model step) ends cancelled requests and requests past
  their deadline (their live trajectories leave with their best-so-far state), then fills the
  free slots from the queue;
- :meth:`Scheduler.observe` (after it) names the trajectories whose state the runner reads in one
  copy: those leaving, and the live ones of streaming requests due an event;
- :meth:`Scheduler.postprocess` records the leaving trajectories, lets each request's policies
  react (a restart, more breadth), completes each request that is done (the remaining siblings
  are evicted), samples the streams, and refills the freed slots in the same step, so the next
  model step runs a full pool; a restart that starts from a leaving trajectory's final latents
  (``restart: renoise``) has that state kept for it (``Decision.keep``) until it starts, or
  forgotten (``Decision.forget``) when it never will;
- :meth:`Scheduler.settle`, once the runner applied a decision, finishes the requests it ended.

Two policies decide who holds the slots (``EngineConfig.scheduler``, ``EQR_SCHEDULER``):

- ``fair`` (the default): slot-iterations are the shared resource. Whenever work waits, the
  requests are ranked by attained service with priority and aging on top, deadlines within a class
  (:func:`~eqr.server.engine.sharing.rank`), and given slots by share per client and per request,
  then in rank order (:func:`~eqr.server.engine.sharing.share`). A trajectory that loses its slot is
  *preempted*: it leaves with its whole state (the runner saves it on the host) and resumes later
  where it stopped, so its answer and iteration count are those of an uninterrupted run. At most
  ``max_saved`` trajectories wait preempted (the saved-state bound in bytes, divided by a row's
  size); beyond it new work waits in the queue. Slots no request needs are offered to requests that
  can use more at once (breadth on demand, verified restarts: work-conserving breadth).
- ``fcfs``: the first-come scheduler kept for comparison (benchmarks/scheduling.py): a queue ordered
  by :func:`~eqr.server.engine.policies.queue_key` (priority with aging, then arrival), and a
  trajectory keeps its slot until it ends.

Deadlines: :func:`~eqr.server.engine.policies.deadline`. Times come from the engine's clock, so
tests drive them without sleeping.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from eqr.runtime.decisions import Admission, Decision, Leave, State
from eqr.server.engine.policies import queue_key
from eqr.server.engine.request import Request, RequestStatus, Trajectory, TrajectoryStatus
from eqr.server.engine.sharing import QUANTUM, score, share
from eqr.server.jobs import SolveResult, Status

Ended = tuple[Request, SolveResult]


class Progress(NamedTuple):
    """A streaming request's state after a step, for its iteration event: its most settled live trajectory,
    or a trajectory that just left with its answer (``ended``: why), so a client sees each one end."""

    request: Request
    trajectory: Trajectory  # the one shown
    iteration: int  # its iterations so far
    tokens: np.ndarray  # its current prediction (token ids)
    residual: float
    live: int  # the request's trajectories still running
    ended: str | None = None  # its last iteration: converged, halted or depth


# eviction label of trajectories dropped because their request ended early; None: its answer is in (a quorum
# agrees, or verified mode verified one)
_DROPPED = {Status.CANCELLED: "cancelled", Status.DEADLINE: "deadline", Status.FAILED: "failed", None: "quorum"}
_BEST_SO_FAR = (Status.DEADLINE, Status.CANCELLED)  # endings whose live trajectories still offer an answer


def _kept_unstarted(trajectories: Iterable[Trajectory]) -> list[Trajectory]:
    """Restarts that were to start from a kept state (renoise) and now never will: the runner frees it."""
    return [t for t in trajectories if t.base is not None and not t.started]


POLICIES = ("fair", "fcfs")


class Scheduler:
    """Queue policy plus slot accounting; owned by the engine thread (not thread-safe)."""

    def __init__(
        self, capacity: int, aging_per_s: float, policy: str = "fair", max_saved: int = 1 << 30, quantum: int = QUANTUM
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"scheduler must be one of {POLICIES}, got {policy!r}")
        self.capacity = capacity
        self.aging_per_s = aging_per_s
        self.fair = policy == "fair"
        self.max_saved = max_saved  # trajectories that may wait preempted (their state saved) at once
        self.quantum = quantum
        self.live = 0  # slots held: admitted and resumed minus evicted and preempted
        self.preempted = 0  # trajectories preempted now (their state saved by the runner)
        self.moves: Counter[str] = Counter()  # preempted / resumed since the engine last drained it
        self.clock = 0  # model steps run; a running trajectory's iterations = attained + clock - started_at_step
        self.now = 0.0  # the engine's clock at the last schedule()
        self._dirty = False  # an arrival or a departure since the fair scheduler last chose
        self.active: dict[str, Request] = {}  # requests without a result
        self.waiting = 0  # trajectories waiting for a slot
        self.queued_requests = 0  # requests none of whose trajectories has had a slot yet
        self.evictions: Counter[str] = Counter()  # trajectories that left a slot, by reason (engine drains it)
        self._queue: list[tuple[float, int, Request]] = []
        self._deadlines: list[tuple[float, int, Request]] = []
        self._streaming: dict[str, Request] = {}
        self._due: list[tuple[Request, list[Trajectory]]] = []  # streams due an event this step
        self._seq = itertools.count()
        self._forget: list[Trajectory] = []  # restarts with kept state that will never start (dropped by budget)

    def add(self, request: Request) -> None:
        seq = next(self._seq)
        request.queue_key = queue_key(request.plan, request.arrival, self.aging_per_s, seq)
        request.starved_since = request.arrival
        self._enqueue(request)
        if request.deadline is not None:
            if len(self._deadlines) > 2 * len(self.active) + 64:  # drop entries of finished requests
                self._deadlines = [e for e in self._deadlines if e[2].id in self.active]
                heapq.heapify(self._deadlines)
            heapq.heappush(self._deadlines, (request.deadline, seq, request))
        if request.on_event is not None:
            self._streaming[request.id] = request
        self.active[request.id] = request
        self.waiting += request.waiting
        self.queued_requests += 1

    def schedule(self, now: float, cancel: Iterable[str] = ()) -> Decision:
        """Before the model step: end cancelled and expired requests (``now``: the engine's clock), fill free slots."""
        ending = {i: (self.active[i], Status.CANCELLED) for i in cancel if i in self.active}
        while self._deadlines and self._deadlines[0][0] <= now:
            r = heapq.heappop(self._deadlines)[2]
            if r.id in self.active:
                ending.setdefault(r.id, (r, Status.DEADLINE))
        self.now = now
        decision = self._end(ending.values())
        return self._fill(decision)

    def observe(self, leaving: list[tuple[Trajectory, Leave]]) -> list[Trajectory]:
        """After the model step: the trajectories whose state to read (the leaving ones, then the live ones
        of the streams due an event), for :meth:`postprocess`."""
        self.clock += 1
        self._due = self._due_streams({t for t, _ in leaving})
        return [t for t, _ in leaving] + [t for _, group in self._due for t in group]

    def postprocess(
        self, leaving: list[tuple[Trajectory, Leave]], state: State | None
    ) -> tuple[Decision, list[Progress]]:
        """Record the leaving trajectories (``state``: what :meth:`observe` named, in its order), end the
        requests that are done, and refill: the decision for the runner, and the streams' progress."""
        progress, at = [], len(leaving)
        for r, group in self._due:
            k = int(np.argmin(state.scores[at : at + len(group)]))  # most settled; first on ties
            t = group[k]
            shown = Progress(r, t, t.ran(self.clock), state.preds[at + k], float(state.residuals[at + k]), len(group))
            progress.append(shown)
            at += len(group)
        last: list[Progress] = []  # the last iteration of each streamed trajectory leaving with its answer
        touched: dict[str, Request] = {}
        keep: list[tuple[Trajectory, Trajectory]] = []  # (leaving, the restart that starts from its state)
        for i, (t, code) in enumerate(leaving):
            settled = int(state.changed_at[i]) if code != Leave.DEPTH else None  # where its answer appeared
            r = t.request
            # more trajectories may wait now (a restart, or breadth on demand), at the request's old place
            added = r.leave(t, self.clock, tuple(state.preds[i].tolist()), float(state.scores[i]), finished=True,
                            settled_at=settled)  # fmt: skip
            self.evictions[code.label] += 1
            touched[r.id] = r
            if r.id in self._streaming:
                last.append(Progress(r, t, t.iterations, state.preds[i], float(state.residuals[i]), 0, code.label))
            if added:
                keep += [(t, u) for u in r.trajectories[-added:] if u.base is t]
                self.waiting += added
                if not r.queued:
                    self._enqueue(r)
        self.live -= len(leaving)
        last = [p._replace(live=len(p.request.live)) for p in last]  # those still running, before any refill
        self._dirty = self._dirty or bool(leaving)
        decision = self._end((r, None) for r in touched.values() if r.done)
        decision.evict = [t for t, _ in leaving] + list(decision.evict)
        decision.keep = keep
        self._fill(decision)
        ended = {r.id for r, _ in decision.ending}
        # a request that ended streams its trajectories' ends (before its result), no more progress
        return decision, last + [p for p in progress if p.request.id not in ended]

    def settle(self, decision: Decision, state: State | None) -> list[Ended]:
        """Once the runner applied ``decision``: the requests it ends finish, with the best-so-far answers
        of the trajectories it read (``state``, in ``decision.read``'s order)."""
        if not decision.ending:
            return []
        read = {t: i for i, t in enumerate(decision.read)}
        for r, _ in decision.ending:
            for t in sorted(r.live, key=lambda t: t.index):
                i = read.get(t)
                answer = tuple(state.preds[i].tolist()) if i is not None else None
                score = float(state.scores[i]) if i is not None else math.inf
                r.leave(t, self.clock, answer, score, finished=False)
        ended = []
        for r, status in decision.ending:
            ended.append((r, r.finish(status, decision.error)))
        return ended

    def fail_live(self, error: str) -> Decision:
        """The model step raised: fail the requests that had a trajectory in it; the queue carries on."""
        hit = [r for r in self.active.values() if r.in_slot]
        return self._end(((r, Status.FAILED) for r in hit), error)

    def end_all(self, status: Status, error: str | None = None) -> Decision:
        """End every request now (engine stop: cancelled; engine fault: failed)."""
        return self._end(((r, status) for r in list(self.active.values())), error)

    # -- internals ------------------------------------------------------------------------------

    def _end(self, items: Iterable[tuple[Request, Status | None]], error: str | None = None) -> Decision:
        """Decide the end of requests; ``None`` status means they have their answer (converged/max_iterations).

        Their live trajectories leave: after a deadline or cancel with their current state (read
        first) as a best-so-far answer; after a quorum or a failure without one. Waiting ones never
        start. They finish in :meth:`settle`, once the runner has read that state.
        """
        items = list(items)
        leaving = [(t, s) for r, s in items for t in sorted(r.live, key=lambda t: t.index)]
        # a trajectory that has not run yet has no state worth reporting
        read = [t for t, s in leaving if s in _BEST_SO_FAR and t.ran(self.clock) > 0]
        for _, status in leaving:
            self.evictions[_DROPPED[status]] += 1
        forget = [t for r, _ in items for t in _kept_unstarted(r.trajectories[r.next_waiting :])]
        for r, _ in items:
            self.live -= r.in_slot
            self.preempted -= len(r.live) - r.in_slot
            self._dirty = True
            self.waiting -= r.waiting
            if r.status is RequestStatus.WAITING:
                self.queued_requests -= 1
            del self.active[r.id]
            self._streaming.pop(r.id, None)
            r.status = RequestStatus.FINISHED  # waits no more: the queue skips it
        return Decision(evict=[t for t, _ in leaving], read=read, ending=items, error=error, forget=forget)

    def _enqueue(self, request: Request) -> None:
        """Into the first-come queue at the request's own place (fixed at arrival: a restart does not lose it)."""
        if self.fair:
            return
        heapq.heappush(self._queue, (*request.queue_key, request))
        request.queued = True

    def _fill(self, decision: Decision) -> Decision:
        """Add to ``decision`` who gets the free slots (and, fair, who is preempted and who resumes)."""
        if not self.fair:
            decision.admit = self._admissions(self._admit())
        elif self._dirty or self.waiting or self.preempted:
            self._dirty = False
            self._choose(decision)
        if self._forget:
            decision.forget, self._forget = [*decision.forget, *self._forget], []
        return decision

    def _take(self, r: Request, n: int) -> list[Trajectory]:
        """Start up to ``n`` of ``r``'s waiting trajectories now."""
        was_waiting, before, first = r.status is RequestStatus.WAITING, r.waiting, r.next_waiting
        got = r.take(n)
        self._forget += _kept_unstarted(r.trajectories[first : r.next_waiting])  # dropped for want of budget
        if was_waiting and got:
            self.queued_requests -= 1
        for t in got:
            t.started_at_step = self.clock
        self.waiting -= before - r.waiting  # taken, and any dropped for want of budget
        return got

    def _admit(self) -> list[Trajectory]:
        """First-come: fill free slots from the queue, best effective priority first, a request's trajectories
        in order."""
        free = self.capacity - self.live
        taken: list[Trajectory] = []
        while free and self._queue:
            r = self._queue[0][2]
            if r.waiting:
                got = self._take(r, free)
                taken += got
                free -= len(got)
            if not r.waiting:  # fully admitted, or ended while queued
                heapq.heappop(self._queue)
                r.queued = False
        self.live += len(taken)
        return taken

    def _rank(self, r: Request) -> tuple[int, float, int]:
        """The fair order: class (attained service, priority, aging), then deadline, then arrival."""
        waited = r.waited + (self.now - r.starved_since if r.starved_since is not None else 0.0)
        cls = score(r.attained(self.clock), self.quantum, r.plan.priority, self.aging_per_s, waited)
        return cls, r.deadline if r.deadline is not None else math.inf, r.queue_key[1]

    def _choose(self, decision: Decision) -> None:
        """Fair: rank the requests with work, share the slots, and turn the shares into preemptions,
        resumptions and admissions (within the saved-state bound)."""
        ranked = sorted(((self._rank(r), r) for r in self.active.values() if r.live or r.waiting), key=lambda e: e[0])
        order = [r for _, r in ranked]
        tied = sum(1 for key, _ in ranked if key[0] == ranked[0][0][0]) if ranked else 0
        given = share(order, self.capacity, lambda r: len(r.live) + r.waiting, lambda r: r.client, tied)
        spare = self.capacity - sum(given.values())
        for r in order:  # work-conserving breadth: slots nobody needs go to requests that can use more at once
            if not spare:
                break
            added = r.widen(spare)
            self.waiting += added
            given[r] += added
            spare -= added
        victims: list[Trajectory] = []
        resume: list[Trajectory] = []
        starts: list[list] = []  # [request, how many to start], in rank order
        for r in order:
            n = given[r]
            if r.live:  # most requests of a long queue have none: skip their two sorts (cost per step)
                held = sorted((t for t in r.live if t.status is TrajectoryStatus.RUNNING), key=lambda t: t.index)
                victims += held[n:]  # a request that lost slots gives up its latest trajectories
                n -= min(n, len(held))
                paused = sorted((t for t in r.live if t.status is TrajectoryStatus.PREEMPTED), key=lambda t: t.index)
                resume += paused[:n]
                n -= min(n, len(paused))
            if n:
                starts.append([r, n])
        # the saved-state bound: beyond it, the best-ranked victims keep their slots and the worst-ranked
        # starts wait
        while self.preempted + len(victims) - len(resume) > self.max_saved and victims and starts:
            victims.pop(0)
            starts[-1][1] -= 1
            if not starts[-1][1]:
                starts.pop()
        for t in victims:
            t.request.preempt(t, self.clock)
        for t in resume:
            t.request.resume(t, self.clock)
        taken = [t for r, n in starts for t in self._take(r, n)]
        self.preempted += len(victims) - len(resume)
        self.live += len(resume) + len(taken) - len(victims)
        self.moves["preempted"] += len(victims)
        self.moves["resumed"] += len(resume)
        for r in order:  # aging: the time each request has work and no slot
            if r.in_slot and r.starved_since is not None:
                r.waited += self.now - r.starved_since
                r.starved_since = None
            elif not r.in_slot and r.starved_since is None:
                r.starved_since = self.now
        decision.preempt, decision.resume = victims, resume
        decision.admit = self._admissions(taken)

    @staticmethod
    def _admissions(taken: list[Trajectory]) -> list[Admission]:
        return [
            Admission(
                t, t.seed, t.request.tokens, t.request.plan.noise, t.depth, t.request.plan.halt == "q_halt", t.renoise
            )
            for t in taken
        ]

    def _due_streams(self, leaving: set[Trajectory]) -> list[tuple[Request, list[Trajectory]]]:
        """Streaming requests at a multiple of their ``stream_every``, with their trajectories that stay."""
        due = []
        for r in self._streaming.values():
            staying = sorted(
                (t for t in r.live if t.status is TrajectoryStatus.RUNNING and t not in leaving), key=lambda t: t.index
            )
            if staying:
                r.ticks += 1
                if r.ticks % r.plan.stream_every == 0:
                    due.append((r, staying))
        return due
