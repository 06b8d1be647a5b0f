"""The worker's intake: new entries from its models' jobs streams, and entries a dead worker left behind.

One ``XREADGROUP`` reads the streams of every model it serves that has room (:class:`Assignments`,
per model), as many entries as the smallest such room, and ``XAUTOCLAIM`` takes over each stream's
entries idle past ``claim_idle_s`` (their owner stopped renewing its lease). An entry delivered
more than ``max_deliveries`` times goes to the dead-letter stream with a ``failed`` result. Each
taken job goes to its model's local engine and is followed to its result.
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
    Entry,
    decode_entry,
    entry_job_id,
    failed_result,
)
from eqr.server.jobs import Job, SolveResult, Status
from eqr.server.worker.assignments import Assignment, WorkerContext
from eqr.server.worker.outbox import Outbox

log = logging.getLogger(__name__)

BLOCK_MS = 1000  # longest XREADGROUP wait: bounds how late a stop is noticed
# ... while a model's stream is left out of the read (no room, or a backlog): a blocked read cannot
# be interrupted safely, so this bounds how long that model waits once its engine frees room
LEFT_OUT_BLOCK_MS = 100


class Intake:
    """Reads and reclaims entries into ``held`` and hands their jobs to ``local``."""

    def __init__(self, ctx: WorkerContext, outbox: Outbox, *, dead: Counter, reclaimed: Counter) -> None:
        self.ctx = ctx
        self._outbox = outbox
        self._dead = dead  # eqr_worker_dead_letters
        self._reclaimed = reclaimed  # eqr_worker_reclaimed
        # per model: taken, but its engine's queue (its own limit, max_queue) was full: submitted as it drains
        self._backlog: dict[str, deque[Assignment]] = {model: deque() for model in ctx.local.cards}
        self._followers: set[asyncio.Task[None]] = set()
        self.stopping = False  # set at shutdown: a cancelled result is then ours, not an answer

    async def read_loop(self) -> None:
        held = self.ctx.held
        while True:
            for backlog in self._backlog.values():
                while backlog:
                    if not await self._submit(backlog.popleft(), from_backlog=True):
                        break
            # a model with a backlog takes nothing new until its engine catches up; the others read on
            rooms = {
                stream: held.room(model)
                for stream, model in self.ctx.streams.items()
                if not self._backlog[model] and held.room(model) > 0
            }
            if not rooms:
                held.room_freed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(held.room_freed.wait(), BLOCK_MS / 1000)
                continue
            block_ms = BLOCK_MS if len(rooms) == len(self.ctx.streams) else LEFT_OUT_BLOCK_MS
            try:
                reply = await self.ctx.client.xreadgroup(
                    GROUP, self.ctx.name, dict.fromkeys(rooms, ">"), count=min(rooms.values()), block=block_ms
                )
                self.ctx.health.up()
            except REDIS_ERRORS as exc:
                await self.ctx.after_error(exc)
                continue
            for stream, entries in reply or []:
                model = self.ctx.streams[stream]
                for entry_id, fields in entries:
                    await self._take(Entry(model, entry_id), fields, deliveries=1)

    async def reclaim_loop(self) -> None:
        """Take over entries idle past ``claim_idle_s``: their owner stopped renewing its lease."""
        period = max(0.2, self.ctx.options.claim_idle_s / 4)
        rounds = 0
        while True:
            await asyncio.sleep(period)
            rounds += 1
            if rounds % 64 == 0:
                with contextlib.suppress(*REDIS_ERRORS):
                    await self._prune_consumers()
            for stream, model in self.ctx.streams.items():
                try:
                    await self._reclaim(stream, model)
                except REDIS_ERRORS as exc:
                    await self.ctx.after_error(exc)
                    break

    async def _reclaim(self, stream: str, model: str) -> None:
        """One ``XAUTOCLAIM`` round on one model's stream, up to that model's room."""
        room = self.ctx.held.room(model)
        if room <= 0:
            return
        idle_ms = int(self.ctx.options.claim_idle_s * 1000)
        _, claimed, _ = await self.ctx.client.xautoclaim(
            stream, GROUP, self.ctx.name, min_idle_time=idle_ms, start_id="0-0", count=room
        )
        claimed = [(Entry(model, i), f) for i, f in claimed if f and Entry(model, i) not in self.ctx.held]
        if not claimed:
            return
        async with self.ctx.client.pipeline(transaction=False) as pipe:
            for entry, _ in claimed:
                pipe.xpending_range(stream, GROUP, min=entry.id, max=entry.id, count=1)
            pending = await pipe.execute()
        for (entry, fields), info in zip(claimed, pending, strict=True):
            deliveries = info[0]["times_delivered"] if info else self.ctx.options.max_deliveries + 1
            log.warning("reclaimed job entry %s of model %r (delivery %d)", entry.id, model, deliveries)
            self._reclaimed.inc()
            await self._take(entry, fields, deliveries=deliveries)

    def withdraw(self, a: Assignment) -> None:
        """``a`` is not to be submitted after all (abandoned, or shutting down)."""
        backlog = self._backlog[a.entry.model]
        if a in backlog:
            backlog.remove(a)

    def stop(self) -> None:
        """Shutdown: what waits in the backlogs never starts (it is handed back with the rest)."""
        for backlog in self._backlog.values():
            for a in backlog:
                a.computing = False
            backlog.clear()

    async def settled(self, timeout_s: float) -> None:
        """Wait until every followed job has reported (or ``timeout_s``)."""
        if self._followers:
            await asyncio.wait(self._followers, timeout=timeout_s)

    async def _prune_consumers(self) -> None:
        """Drop consumers that hold nothing and have not read for long: dead workers' names (host-pid)
        would otherwise pile up in the group forever. A live worker reads every second."""
        forgotten_ms = int(max(60.0, 10 * self.ctx.options.claim_idle_s) * 1000)
        for stream in self.ctx.streams:
            for consumer in await self.ctx.client.xinfo_consumers(stream, GROUP):
                if consumer["pending"] == 0 and consumer["idle"] > forgotten_ms and consumer["name"] != self.ctx.name:
                    await self.ctx.client.xgroup_delconsumer(stream, GROUP, consumer["name"])

    async def _take(self, entry: Entry, fields: dict[str, str], deliveries: int) -> None:
        if entry in self.ctx.held:
            return
        try:
            delivery = decode_entry(fields)
        except (ValueError, KeyError, TypeError) as exc:
            await self._dead_letter(entry, fields, deliveries, f"unreadable job entry: {exc}")
            return
        if deliveries > self.ctx.options.max_deliveries:
            reason = (
                f"dead-lettered after {deliveries} deliveries (max_deliveries {self.ctx.options.max_deliveries}): "
                "the workers that took this job died or stopped before finishing it"
            )
            await self._dead_letter(entry, fields, deliveries, reason)
            return
        if delivery.job.model != entry.model:  # the API writes each job to its own model's stream
            reason = f"invalid job: it names model {delivery.job.model!r} but sits in the stream of {entry.model!r}"
            self._outbox.store(entry, delivery, deliveries, failed_result(delivery.job, reason))
            return
        a = Assignment(entry, delivery, deliveries)
        self.ctx.held.add(a)
        with contextlib.suppress(*REDIS_ERRORS):
            a.cancel_requested = bool(await self.ctx.client.exists(self.ctx.keys.cancel(a.job.id)))
        await self._submit(a)

    async def _submit(self, a: Assignment, from_backlog: bool = False) -> bool:
        """Hand ``a`` to the engine; False when its queue is full (``a`` then waits in the backlog)."""
        try:
            a.handle = await self.ctx.local.submit(a.job, stream=a.delivery.stream, keep=a.delivery.keep)
        except Overloaded:
            backlog = self._backlog[a.entry.model]
            (backlog.appendleft if from_backlog else backlog.append)(a)
            return False
        except InvalidParam as exc:
            a.computing = False
            self._outbox.store(a.entry, a.delivery, a.deliveries, failed_result(a.job, f"invalid job: {exc}"))
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
            self.ctx.held.forget(a.entry)
        elif result is None or (self.stopping and result.status is Status.CANCELLED and not a.cancel_requested):
            pass  # cut short by our own shutdown, not an answer: the entry goes back to the stream
        else:
            self._outbox.store(a.entry, a.delivery, a.deliveries, result)

    async def _dead_letter(self, entry: Entry, fields: dict[str, str], deliveries: int, reason: str) -> None:
        """Park the entry in the (one, shared) dead-letter stream, recording its model, and answer its
        caller with a failed result."""
        log.error("job entry %s of model %r: %s", entry.id, entry.model, reason)
        self._dead.inc()
        record = {**fields, "model": entry.model, "entry_id": entry.id, "deliveries": str(deliveries)}
        record.update(reason=reason, worker=self.ctx.name)
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
                    await self.ctx.client.xack(self.ctx.keys.jobs(entry.model), GROUP, entry.id)
                    await self.ctx.client.xdel(self.ctx.keys.jobs(entry.model), entry.id)
                return
            job = Job(tokens=[], id=job_id, model=entry.model)
            delivery = Delivery(job, fields.get("reply", ""), False, fields.get("keep") == "1")
        self._outbox.store(entry, delivery, deliveries, failed_result(delivery.job, reason))
