"""The worker's intake: new entries from the jobs stream, and entries a dead worker left behind.

``XREADGROUP`` takes as many entries as there is room for (:class:`Assignments`), and
``XAUTOCLAIM`` takes over entries idle past ``claim_idle_s`` (their owner stopped renewing its
lease). An entry delivered more than ``max_deliveries`` times goes to the dead-letter stream with a
``failed`` result. Each taken job goes to the local engine and is followed to its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from prometheus_client import Counter

from eqr.server.broker.base import InvalidParam, Overloaded, Unavailable
from eqr.server.broker.redis import REDIS_ERRORS
from eqr.server.broker.redis_protocol import (
    GROUP,
    Delivery,
    decode_entry,
    entry_job_id,
    failed_result,
)
from eqr.server.jobs import Job, SolveResult, Status
from eqr.server.worker.assignments import Assignment, WorkerContext
from eqr.server.worker.outbox import Outbox

log = logging.getLogger(__name__)

BLOCK_MS = 1000  # longest XREADGROUP wait: bounds how late a stop is noticed


class Intake:
    """Reads and reclaims entries into ``held`` and hands their jobs to ``local``."""

    def __init__(self, ctx: WorkerContext, outbox: Outbox, *, dead: Counter, reclaimed: Counter) -> None:
        self.ctx = ctx
        self._outbox = outbox
        self._dead = dead  # eqr_worker_dead_letters
        self._reclaimed = reclaimed  # eqr_worker_reclaimed
        # taken, but the engine's queue (its own limit, max_queue) was full: submitted as it drains
        self._backlog: deque[Assignment] = deque()
        self._followers: set[asyncio.Task[None]] = set()
        self.stopping = False  # set at shutdown: a cancelled result is then ours, not an answer

    async def read_loop(self) -> None:
        while True:
            while self._backlog:
                if not await self._submit(self._backlog.popleft(), from_backlog=True):
                    break
            room = self.ctx.held.room()
            if room <= 0 or self._backlog:
                self.ctx.held.room_freed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.ctx.held.room_freed.wait(), BLOCK_MS / 1000)
                continue
            try:
                reply = await self.ctx.client.xreadgroup(
                    GROUP, self.ctx.name, {self.ctx.keys.jobs: ">"}, count=room, block=BLOCK_MS
                )
                self.ctx.health.up()
            except REDIS_ERRORS as exc:
                await self.ctx.after_error(exc)
                continue
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    await self._take(entry_id, fields, deliveries=1)

    async def reclaim_loop(self) -> None:
        """Take over entries idle past ``claim_idle_s``: their owner stopped renewing its lease."""
        idle_ms = int(self.ctx.options.claim_idle_s * 1000)
        period = max(0.2, self.ctx.options.claim_idle_s / 4)
        rounds = 0
        while True:
            await asyncio.sleep(period)
            rounds += 1
            if rounds % 64 == 0:
                with contextlib.suppress(*REDIS_ERRORS):
                    await self._prune_consumers()
            room = self.ctx.held.room()
            if room <= 0:
                continue
            try:
                _, claimed, _ = await self.ctx.client.xautoclaim(
                    self.ctx.keys.jobs, GROUP, self.ctx.name, min_idle_time=idle_ms, start_id="0-0", count=room
                )
                claimed = [(i, f) for i, f in claimed if f and i not in self.ctx.held]
                if not claimed:
                    continue
                async with self.ctx.client.pipeline(transaction=False) as pipe:
                    for entry_id, _ in claimed:
                        pipe.xpending_range(self.ctx.keys.jobs, GROUP, min=entry_id, max=entry_id, count=1)
                    pending = await pipe.execute()
            except REDIS_ERRORS as exc:
                await self.ctx.after_error(exc)
                continue
            for (entry_id, fields), info in zip(claimed, pending, strict=True):
                deliveries = info[0]["times_delivered"] if info else self.ctx.options.max_deliveries + 1
                log.warning("reclaimed job entry %s (delivery %d)", entry_id, deliveries)
                self._reclaimed.inc()
                await self._take(entry_id, fields, deliveries=deliveries)

    def withdraw(self, a: Assignment) -> None:
        """``a`` is not to be submitted after all (abandoned, or shutting down)."""
        if a in self._backlog:
            self._backlog.remove(a)

    def stop(self) -> None:
        """Shutdown: what waits in the backlog never starts (it is handed back with the rest)."""
        for a in self._backlog:
            a.computing = False
        self._backlog.clear()

    async def settled(self, timeout_s: float) -> None:
        """Wait until every followed job has reported (or ``timeout_s``)."""
        if self._followers:
            await asyncio.wait(self._followers, timeout=timeout_s)

    async def _prune_consumers(self) -> None:
        """Drop consumers that hold nothing and have not read for long: dead workers' names (host-pid)
        would otherwise pile up in the group forever. A live worker reads every second."""
        forgotten_ms = int(max(60.0, 10 * self.ctx.options.claim_idle_s) * 1000)
        for consumer in await self.ctx.client.xinfo_consumers(self.ctx.keys.jobs, GROUP):
            if consumer["pending"] == 0 and consumer["idle"] > forgotten_ms and consumer["name"] != self.ctx.name:
                await self.ctx.client.xgroup_delconsumer(self.ctx.keys.jobs, GROUP, consumer["name"])

    async def _take(self, entry_id: str, fields: dict[str, str], deliveries: int) -> None:
        if entry_id in self.ctx.held:
            return
        try:
            delivery = decode_entry(fields)
        except (ValueError, KeyError, TypeError) as exc:
            await self._dead_letter(entry_id, fields, deliveries, f"unreadable job entry: {exc}")
            return
        if deliveries > self.ctx.options.max_deliveries:
            reason = (
                f"dead-lettered after {deliveries} deliveries (max_deliveries {self.ctx.options.max_deliveries}): "
                "the workers that took this job died or stopped before finishing it"
            )
            await self._dead_letter(entry_id, fields, deliveries, reason)
            return
        a = Assignment(entry_id, delivery, deliveries)
        self.ctx.held.add(a)
        with contextlib.suppress(*REDIS_ERRORS):
            a.cancel_requested = bool(await self.ctx.client.exists(self.ctx.keys.cancel(a.job.id)))
        await self._submit(a)

    async def _submit(self, a: Assignment, from_backlog: bool = False) -> bool:
        """Hand ``a`` to the engine; False when its queue is full (``a`` then waits in the backlog)."""
        try:
            a.handle = await self.ctx.local.submit(a.job, stream=a.delivery.stream, keep=a.delivery.keep)
        except Overloaded:
            (self._backlog.appendleft if from_backlog else self._backlog.append)(a)
            return False
        except InvalidParam as exc:
            a.computing = False
            self._outbox.store(a.entry_id, a.delivery, a.deliveries, failed_result(a.job, f"invalid job: {exc}"))
            return True
        except Unavailable:
            a.computing = False  # stopping: the entry is handed back at shutdown
            return True
        if a.cancel_requested:
            a.handle.cancel()
        task = asyncio.create_task(self._follow(a))
        self._followers.add(task)
        task.add_done_callback(self._followers.discard)
        return True

    async def _follow(self, a: Assignment) -> None:
        """Forward ``a``'s events, then its result, to the outbox."""
        assert a.handle is not None
        result: SolveResult | None = None
        try:
            if a.delivery.stream and a.delivery.reply:
                async for event in a.handle.events():
                    if not a.abandoned:
                        self._outbox.event(a.delivery.reply, event)
            result = await a.handle.result()
        except Unavailable:
            pass  # the engine stopped without a result
        finally:
            a.computing = False
            self.ctx.held.room_freed.set()
        if a.abandoned:
            self.ctx.held.forget(a.entry_id)
        elif result is None or (self.stopping and result.status is Status.CANCELLED and not a.cancel_requested):
            pass  # cut short by our own shutdown, not an answer: the entry goes back to the stream
        else:
            self._outbox.store(a.entry_id, a.delivery, a.deliveries, result)

    async def _dead_letter(self, entry_id: str, fields: dict[str, str], deliveries: int, reason: str) -> None:
        """Park the entry in the dead-letter stream and answer its caller with a failed result."""
        log.error("job entry %s: %s", entry_id, reason)
        self._dead.inc()
        record = {**fields, "entry_id": entry_id, "deliveries": str(deliveries), "reason": reason}
        record["worker"] = self.ctx.name
        try:
            dead_maxlen = self.ctx.options.dead_maxlen
            await self.ctx.client.xadd(self.ctx.keys.dead, record, maxlen=dead_maxlen, approximate=True)
        except REDIS_ERRORS as exc:
            await self.ctx.after_error(exc)
            return  # still pending: the next claim retries
        try:
            delivery = decode_entry(fields)
        except (ValueError, KeyError, TypeError):
            job_id = entry_job_id(fields)
            if job_id is None:  # nobody to answer: just take it out of the stream
                with contextlib.suppress(*REDIS_ERRORS):
                    await self.ctx.client.xack(self.ctx.keys.jobs, GROUP, entry_id)
                    await self.ctx.client.xdel(self.ctx.keys.jobs, entry_id)
                return
            delivery = Delivery(Job(digits=[], id=job_id), fields.get("reply", ""), False, fields.get("keep") == "1")
        self._outbox.store(entry_id, delivery, deliveries, failed_result(delivery.job, reason))
