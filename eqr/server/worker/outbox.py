"""The worker's outbox: events published and results stored in order, retried until Redis answers.

One task drains it, so a caller sees a job's events before its result. A result is stored with
``STORE`` (first result wins, announce, ack, delete): acking only there gives at-least-once
delivery with exactly one reported result.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from prometheus_client import Counter
from redis.exceptions import ResponseError

from eqr.server.broker.redis import REDIS_ERRORS
from eqr.server.broker.redis_protocol import GROUP, STORE, Delivery, Entry, encode_event, encode_result
from eqr.server.jobs import IterationEvent, SolveResult
from eqr.server.worker.assignments import WorkerContext

log = logging.getLogger(__name__)

FLUSH_S = 10.0  # at shutdown, how long stores may keep retrying against a Redis that is down


@dataclass(frozen=True)
class _Store:
    entry: Entry
    job_id: str
    reply: str
    envelope: str


@dataclass(frozen=True)
class _Event:
    reply: str
    event: IterationEvent


class Outbox:
    """Queue of events and results; :meth:`run` sends them until :meth:`close`."""

    def __init__(self, ctx: WorkerContext, *, result_ttl_ms: int, jobs: Counter) -> None:
        self.ctx = ctx
        self._result_ttl_ms = result_ttl_ms
        self._jobs = jobs  # eqr_worker_jobs{outcome}
        self._script = ctx.client.register_script(STORE)
        self._queue: asyncio.Queue[_Store | _Event | None] = asyncio.Queue()
        self.stopping = False  # set at shutdown: stores then give up after FLUSH_S

    def event(self, reply: str, event: IterationEvent) -> None:
        self._queue.put_nowait(_Event(reply, event))

    def store(self, entry: Entry, delivery: Delivery, deliveries: int, result: SolveResult) -> None:
        envelope = encode_result(result, worker=self.ctx.name, deliveries=deliveries, kept=delivery.keep)
        if (a := self.ctx.held.entry(entry)) is not None:
            a.storing = True
        self._queue.put_nowait(_Store(entry, delivery.job.id, delivery.reply, envelope))

    def close(self) -> None:
        """No more items: :meth:`run` returns once what is queued went out."""
        self._queue.put_nowait(None)

    async def run(self) -> None:
        """Publish events and store results strictly in order."""
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < 256:
                batch.append(self._queue.get_nowait())
            events: list[_Event] = []
            for item in batch:
                if isinstance(item, _Event):
                    events.append(item)
                    continue
                await self._publish(events)
                events = []
                if item is None:
                    return
                await self._store_until_done(item)
            await self._publish(events)

    async def _publish(self, events: list[_Event]) -> None:
        """Events are progress reports: one failed attempt drops them (the result still follows)."""
        if not events:
            return
        try:
            async with self.ctx.client.pipeline(transaction=False) as pipe:
                for e in events:
                    pipe.publish(e.reply, encode_event(e.event))
                await pipe.execute()
        except REDIS_ERRORS as exc:
            self.ctx.health.down(exc)

    async def _store_until_done(self, item: _Store) -> None:
        delay, give_up = 0.1, None
        while True:
            try:
                keys = self.ctx.keys
                stored = await self._script(
                    keys=[keys.result(item.job_id), keys.kept(item.job_id), keys.jobs(item.entry.model)],
                    args=[item.envelope, self._result_ttl_ms, item.reply, GROUP, item.entry.id],
                )
                self.ctx.health.up()
                break
            except ResponseError as exc:  # Redis answered, and will answer the same again: do not loop
                log.error("could not store the result of job %s (%s); it will be redelivered", item.job_id, exc)
                self.ctx.held.forget(item.entry)  # no more lease renewals: reclaimed after claim_idle_s
                return
            except REDIS_ERRORS as exc:
                self.ctx.health.down(exc)
                if self.stopping:
                    give_up = give_up or time.monotonic() + FLUSH_S
                    if time.monotonic() > give_up:
                        return  # still pending in Redis: another worker recomputes it
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)
        self._jobs.labels("stored" if stored == item.envelope else "duplicate").inc()
        self.ctx.held.forget(item.entry)
