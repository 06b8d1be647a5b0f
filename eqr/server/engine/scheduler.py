"""The scheduler: who waits, who gets a slot, and who leaves. Every eviction happens here.

A step is schedule → run → postprocess:

- :meth:`Scheduler.schedule` (before the model step) ends cancelled requests and requests past
  their deadline (their live trajectories leave with their best-so-far state), then fills the
  free slots from the queue;
- :meth:`Scheduler.postprocess` (after it) evicts the trajectories the runner flagged (converged,
  learned halt, depth used), completes each request that has its answer (every trajectory done,
  or a quorum agrees; the remaining siblings are evicted), samples the streaming requests due an
  event (the engine turns them into events), and refills the freed slots in the same step, so the
  next model step runs a full pool.

Queue policy: highest effective priority first, where effective priority is
``priority + aging_per_s × seconds waited``, then arrival order. All waiting requests age at the
same rate, so at any instant comparing two effective priorities is the same as comparing
``priority − aging_per_s × arrival``: the order is fixed at arrival and a heap keyed once
implements aging. A request is overtaken only by later arrivals more than
``aging_per_s × (their arrival − its arrival)`` higher in priority, so low priority never starves.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from eqr.runtime.slots import SlotPool
from eqr.runtime.tracker import Leave
from eqr.server.engine.request import Request, RequestStatus, Trajectory
from eqr.server.jobs import SolveResult, Status

Ended = tuple[Request, SolveResult]


class Progress(NamedTuple):
    """A streaming request's state after a step, for its iteration event: its most settled live trajectory."""

    request: Request
    iteration: int  # highest iteration reached by any of its live trajectories
    tokens: np.ndarray  # that trajectory's current prediction (token ids)
    residual: float
    live: int  # its trajectories still running


# eviction label of trajectories dropped because their request ended early; None: its answer is in (a quorum
# agrees, or verified mode verified one)
_DROPPED = {Status.CANCELLED: "cancelled", Status.DEADLINE: "deadline", Status.FAILED: "failed", None: "quorum"}
_BEST_SO_FAR = (Status.DEADLINE, Status.CANCELLED)  # endings whose live trajectories still offer an answer


class Scheduler:
    """Queue policy plus slot bookkeeping; owned by the engine thread (not thread-safe)."""

    def __init__(self, pool: SlotPool, aging_per_s: float) -> None:
        self.pool = pool
        self.aging_per_s = aging_per_s
        self.clock = 0  # model steps run; a trajectory's iterations = clock - started_at_step
        self.active: dict[str, Request] = {}  # requests without a result
        self.waiting = 0  # trajectories waiting for a slot
        self.queued_requests = 0  # requests none of whose trajectories has had a slot yet
        self.evictions: Counter[str] = Counter()  # trajectories that left a slot, by reason (engine drains it)
        self._queue: list[tuple[float, int, Request]] = []
        self._deadlines: list[tuple[float, int, Request]] = []
        self._streaming: dict[str, Request] = {}
        self._seq = itertools.count()

    def add(self, request: Request) -> None:
        seq = next(self._seq)
        request.queue_key = (self.aging_per_s * request.arrival - request.priority, seq)
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

    def schedule(self, now: float, cancel: Iterable[str] = ()) -> list[Ended]:
        """Before the model step: end cancelled and expired requests (``now``: monotonic), fill free slots."""
        ending = {i: (self.active[i], Status.CANCELLED) for i in cancel if i in self.active}
        while self._deadlines and self._deadlines[0][0] <= now:
            r = heapq.heappop(self._deadlines)[2]
            if r.id in self.active:
                ending.setdefault(r.id, (r, Status.DEADLINE))
        ended = self._end(ending.values())
        self._admit()
        return ended

    def postprocess(self, codes: np.ndarray) -> tuple[list[Ended], list[Progress]]:
        """After the model step: evict the rows whose :class:`Leave` code is set, finish, sample streams, refill.

        The leaving rows and the live rows of streams due this step are read in one snapshot, before
        any row moves: one device-to-host copy however many leave and stream.
        """
        self.clock += 1
        rows = np.flatnonzero(codes).tolist()
        leaving = {self.pool.owners[row] for row in rows}
        due = self._due_streams(leaving)
        streamed = [t.slot for _, group in due for t in group]
        snap = self.pool.snapshot(rows + streamed) if rows or streamed else None
        progress, at = [], len(rows)
        for r, group in due:
            best = at + int(np.argmin(snap.scores[at : at + len(group)]))  # most settled; first on ties
            iteration = max(self.clock - t.started_at_step for t in group)
            progress.append(Progress(r, iteration, snap.preds[best], float(snap.residuals[best]), len(group)))
            at += len(group)
        ended: list[Ended] = []
        if rows:
            touched: dict[str, Request] = {}
            for i, (row, code) in enumerate(zip(rows, codes[rows].tolist(), strict=True)):
                t = self.pool.owners[row]
                settled = int(snap.changed_at[i]) if code != Leave.DEPTH else None  # where its answer appeared
                answer = tuple(snap.preds[i].tolist())
                r = t.request
                r.leave(t, self.clock, answer, float(snap.scores[i]), finished=True, settled_at=settled)
                self.evictions[Leave(code).label] += 1
                touched[r.id] = r
                # more trajectories may wait now (a restart, or breadth on demand), at the request's old place
                added = int(r.verify_mode and r.check(t)) + (r.widen() if r.on_demand else 0)
                if added:
                    self.waiting += added
                    if not r.queued:
                        self._enqueue(r)
            self.pool.release(rows)
            ended = self._end((r, None) for r in touched.values() if r.done)
        self._admit()
        return ended, [p for p in progress if p.request.id in self.active]  # an ended request streams no more

    def fail_live(self, error: str) -> list[Ended]:
        """The model step raised: fail the requests that had a trajectory in it; the queue carries on."""
        hit = dict.fromkeys(t.request for t in self.pool.owners)
        return self._end(((r, Status.FAILED) for r in hit), error)

    def end_all(self, status: Status, error: str | None = None) -> list[Ended]:
        """End every request now (engine stop: cancelled; engine fault: failed)."""
        return self._end(((r, status) for r in list(self.active.values())), error)

    # -- internals ------------------------------------------------------------------------------

    def _end(self, items: Iterable[tuple[Request, Status | None]], error: str | None = None) -> list[Ended]:
        """Finish requests; ``None`` status means they have their answer (converged/max_iterations).

        Their live trajectories leave now: after a deadline or cancel with their current state as
        a best-so-far answer; after a quorum or a failure without one. Waiting ones never start.
        """
        items = list(items)
        leaving = [(t, s) for r, s in items for t in sorted(r.live, key=lambda t: t.index)]
        if leaving:
            rows = [t.slot for t, _ in leaving]
            # a trajectory that has not run yet has no state worth reporting
            keep = [s in _BEST_SO_FAR and self.clock > t.started_at_step for t, s in leaving]
            snap = self.pool.snapshot(rows) if any(keep) else None
            for i, (t, status) in enumerate(leaving):
                answer = tuple(snap.preds[i].tolist()) if snap is not None and keep[i] else None
                score = float(snap.scores[i]) if snap is not None and keep[i] else math.inf
                t.request.leave(t, self.clock, answer, score, finished=False)
                self.evictions[_DROPPED[status]] += 1
            self.pool.release(rows)
        ended = []
        for r, status in items:
            self.waiting -= r.waiting
            if r.status is RequestStatus.WAITING:
                self.queued_requests -= 1
            del self.active[r.id]
            self._streaming.pop(r.id, None)
            ended.append((r, r.finish(status, error)))
        return ended

    def _enqueue(self, request: Request) -> None:
        """Into the queue at the request's own place (fixed at arrival: a restart does not lose it)."""
        heapq.heappush(self._queue, (*request.queue_key, request))
        request.queued = True

    def _admit(self) -> None:
        """Fill free slots from the queue: best effective priority first, a request's trajectories in order."""
        free = self.pool.free
        taken: list[Trajectory] = []
        while free and self._queue:
            r = self._queue[0][2]
            if r.waiting:
                was_waiting, before = r.status is RequestStatus.WAITING, r.waiting
                got = r.take(free)
                if was_waiting and got:
                    self.queued_requests -= 1
                for t in got:
                    t.started_at_step = self.clock
                taken += got
                free -= len(got)
                self.waiting -= before - r.waiting  # taken, and any dropped for want of budget
            if not r.waiting:  # fully admitted, or ended while queued
                heapq.heappop(self._queue)
                r.queued = False
        if taken:
            requests = [t.request for t in taken]
            self.pool.assign(
                taken,
                [t.seed for t in taken],
                np.stack([r.tokens for r in requests]),
                [r.noise for r in requests],
                [t.depth for t in taken],
                [r.halt_on_q for r in requests],
            )

    def _due_streams(self, leaving: set[Trajectory]) -> list[tuple[Request, list[Trajectory]]]:
        """Streaming requests at a multiple of their ``stream_every``, with their trajectories that stay."""
        due = []
        for r in self._streaming.values():
            staying = sorted((t for t in r.live if t not in leaving), key=lambda t: t.index)
            if staying:
                r.ticks += 1
                if r.ticks % r.stream_every == 0:
                    due.append((r, staying))
        return due
