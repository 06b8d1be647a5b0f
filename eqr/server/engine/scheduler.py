"""The scheduler: who waits, who gets a slot, and who leaves. Every eviction happens here.

A step is schedule → run → postprocess:

- :meth:`Scheduler.schedule` (before the model step) ends cancelled requests and requests past
  their deadline (their live trajectories leave with their best-so-far state), then fills the
  free slots from the queue;
- :meth:`Scheduler.postprocess` (after it) evicts the trajectories the runner flagged (converged,
  learned halt, depth used), completes each request that has its answer (every trajectory done,
  or a quorum agrees; the remaining siblings are evicted), emits stream events, and refills the
  freed slots in the same step, so the next model step runs a full pool.

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

import numpy as np

from eqr.model.tasks.sudoku import from_tokens
from eqr.server.engine.request import IterationEvent, Request, RequestStatus, SolveResult, Status, Trajectory
from eqr.server.engine.runner import Leave
from eqr.server.engine.slots import SlotPool

Ended = tuple[Request, SolveResult]

# eviction label of trajectories dropped because their request ended early; None: a quorum agreed
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
        heapq.heappush(self._queue, (self.aging_per_s * request.arrival - request.priority, seq, request))
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

    def postprocess(self, codes: np.ndarray) -> tuple[list[Ended], list[tuple[Request, IterationEvent]]]:
        """After the model step: evict the rows whose :class:`Leave` code is set, finish, stream, refill."""
        self.clock += 1
        rows = np.flatnonzero(codes)
        ended: list[Ended] = []
        if rows.size:
            snap = self.pool.snapshot(rows)
            touched: dict[str, Request] = {}
            for row, code, pred, score, changed in zip(
                rows.tolist(), codes[rows].tolist(), snap.preds, snap.scores.tolist(), snap.changed_at.tolist(),
                strict=True,
            ):  # fmt: skip
                t = self.pool.owners[row]
                settled = changed if code != Leave.DEPTH else None  # where the answer it converged on appeared
                t.request.leave(t, self.clock, tuple(pred.tolist()), score, finished=True, settled_at=settled)
                self.evictions[Leave(code).label] += 1
                touched[t.request.id] = t.request
            self.pool.release(rows.tolist())
            ended = self._end((r, None) for r in touched.values() if r.done)
        events = self._progress()
        self._admit()
        return ended, events

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

    def _admit(self) -> None:
        """Fill free slots from the queue: best effective priority first, a request's trajectories in order."""
        free = self.pool.free
        taken: list[Trajectory] = []
        while free and self._queue:
            r = self._queue[0][2]
            if r.waiting:
                if r.status is RequestStatus.WAITING:
                    self.queued_requests -= 1
                got = r.take(free)
                for t in got:
                    t.started_at_step = self.clock
                taken += got
                free -= len(got)
                self.waiting -= len(got)
            if not r.waiting:  # fully admitted, or ended while queued
                heapq.heappop(self._queue)
        if taken:
            self.pool.assign(taken)

    def _progress(self) -> list[tuple[Request, IterationEvent]]:
        """Stream events of requests at a multiple of their ``stream_every``: their best live trajectory."""
        due = []
        for r in self._streaming.values():
            if r.live:
                r.ticks += 1
                if r.ticks % r.stream_every == 0:
                    due.append(r)
        if not due:
            return []
        groups = [sorted(r.live, key=lambda t: t.index) for r in due]
        snap = self.pool.snapshot([t.slot for g in groups for t in g])
        events, at = [], 0
        for r, g in zip(due, groups, strict=True):
            best = at + int(np.argmin(snap.scores[at : at + len(g)]))  # most settled; first on ties
            iteration = max(self.clock - t.started_at_step for t in g)
            board = from_tokens(snap.preds[best])
            events.append((r, IterationEvent(r.id, iteration, board, float(snap.residuals[best]), len(g))))
            at += len(g)
        return events
