"""The worker's lease and cancellation: heartbeats that keep its entries its own, and cancels that stop them.

Every heartbeat the worker advertises itself (name, the cards of the models it serves, slots, load,
metrics port) and resets the idle time of the entries it is computing (``RENEW``, once per model's
stream), so a long solve is never mistaken for a dead worker; an entry it finds owned by someone
else was reclaimed, and its local copy is dropped. Cancels arrive on a channel, and the cancel keys
are also checked every beat, which covers a channel outage. At shutdown the unfinished entries are
handed back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections import defaultdict

from eqr.server.broker.redis import REDIS_ERRORS
from eqr.server.broker.redis_protocol import GROUP, RENEW, Entry, encode_cards, encode_marker
from eqr.server.worker.assignments import Assignment, WorkerContext
from eqr.server.worker.intake import Intake

log = logging.getLogger(__name__)


class Lease:
    """Heartbeat, lease renewal and cancellation for the entries in ``held``."""

    def __init__(self, ctx: WorkerContext, intake: Intake, *, metrics_port: int) -> None:
        self.ctx = ctx
        self._intake = intake
        self._metrics_port = metrics_port  # the one it bound, advertised: with --metrics-port 0 only it knows
        self._renew = ctx.client.register_script(RENEW)
        self.last_beat = time.monotonic()

    async def heartbeat_loop(self) -> None:
        while True:
            self.last_beat = time.monotonic()
            try:
                await self._beat()
                self.ctx.health.up()
            except REDIS_ERRORS as exc:
                await self.ctx.after_error(exc)
            except Exception:
                log.exception("heartbeat failed")
            await asyncio.sleep(self.ctx.options.heartbeat_s)

    async def _beat(self) -> None:
        stats = self.ctx.local.stats()
        doc = {
            "name": self.ctx.name,
            "cards": encode_cards(self.ctx.local.cards),
            "slots": stats.capacity,
            "live_slots": stats.live_slots,
            "queue_depth": stats.queue_depth,
            "in_flight": stats.in_flight,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "metrics_port": self._metrics_port,
        }
        async with self.ctx.client.pipeline(transaction=False) as pipe:
            pipe.set(self.ctx.keys.worker(self.ctx.name), json.dumps(doc), px=int(self.ctx.options.worker_ttl_s * 1000))
            pipe.sadd(self.ctx.keys.workers, self.ctx.name)
            await pipe.execute()
        held = self.ctx.held.all()
        if not held:
            return
        for model, ids in _by_model(held).items():
            lost = await self._renew(keys=[self.ctx.keys.jobs(model)], args=[GROUP, self.ctx.name, *ids])
            for entry_id in lost:
                self._abandon(Entry(model, entry_id))
        computing = [a for a in held if a.computing and not a.abandoned]
        if computing:
            flags = await self.ctx.client.mget([self.ctx.keys.cancel(a.job.id) for a in computing])
            for a, flag in zip(computing, flags, strict=True):
                if flag is not None:
                    self.cancel_job(a.job.id)
        running = [a for a in computing if a.delivery.keep and not a.marked_running and a.started]
        if running:
            async with self.ctx.client.pipeline(transaction=False) as pipe:
                for a in running:
                    marker = encode_marker("running", a.entry, self.ctx.name)
                    pipe.set(self.ctx.keys.kept(a.job.id), marker, xx=True, keepttl=True)
                await pipe.execute()
            for a in running:
                a.marked_running = True

    async def cancel_loop(self) -> None:
        while True:
            pubsub = self.ctx.client.pubsub()
            try:
                await pubsub.subscribe(self.ctx.keys.cancel_channel)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self.cancel_job(message["data"])
            except REDIS_ERRORS as exc:
                self.ctx.health.down(exc)  # the heartbeat's look at the cancel keys covers the gap
            finally:
                with contextlib.suppress(*REDIS_ERRORS):
                    await pubsub.aclose()
            await asyncio.sleep(min(1.0, self.ctx.options.heartbeat_s))

    def cancel_job(self, job_id: str) -> None:
        a = self.ctx.held.job(job_id)
        if a is None or a.cancel_requested or not a.computing:
            return
        a.cancel_requested = True
        if a.handle is not None:
            a.handle.cancel()  # the engine frees its slots at the next step; the result says cancelled

    def _abandon(self, entry: Entry) -> None:
        """Another worker owns the entry (or it was completed): stop computing a copy nobody will use."""
        a = self.ctx.held.entry(entry)
        if a is None or a.storing:  # a store that just acked it, or one that will find the winner's result
            return
        log.warning("lost the lease on job %s to another worker; dropping the local copy", a.job.id)
        a.abandoned = True
        self._intake.withdraw(a)
        if a.handle is not None and a.computing:
            a.handle.cancel()
        else:
            self.ctx.held.forget(entry)

    async def release(self) -> None:
        """Hand every held entry back: idle time past ``claim_idle_s`` makes them claimable at once
        (JUSTID: the delivery count is not raised by this step, only by the next claim)."""
        held = self.ctx.held.all()
        idle_ms = int(self.ctx.options.claim_idle_s * 1000) + 1
        for model, ids in _by_model(held).items():
            stream = self.ctx.keys.jobs(model)
            await self.ctx.client.xclaim(stream, GROUP, self.ctx.name, 0, ids, idle=idle_ms, justid=True)
        if held:
            log.info("handed back %d unfinished job(s)", len(held))


def _by_model(held: list[Assignment]) -> dict[str, list[str]]:
    """Entry ids by model: each model's stream is renewed and handed back on its own."""
    ids: dict[str, list[str]] = defaultdict(list)
    for a in held:
        ids[a.entry.model].append(a.entry.id)
    return ids
