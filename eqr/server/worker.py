"""``eqr worker --redis URL``: one engine fed from the shared jobs stream.

The worker is the in-process :class:`~eqr.server.broker.local.LocalBroker` (model, engine thread,
futures, event queues) plus pumps between it and Redis:

- **intake**: ``XREADGROUP`` for as many jobs as there is room (free slots plus ``prefetch``), and
  ``XAUTOCLAIM`` for entries a dead worker left pending longer than ``claim_idle_s``. A job delivered
  more than ``max_deliveries`` times goes to the dead-letter stream with a ``failed`` result.
- **lease**: every heartbeat the worker resets the idle time of the entries it is computing (``RENEW``),
  so a long solve is never mistaken for a dead worker; an entry it finds owned by someone else was
  reclaimed, and its local copy is cancelled.
- **outbox**: one task publishes events and stores results in order (``STORE``: first result wins,
  announce, ack, delete), retrying stores until Redis answers. Acking only inside ``STORE`` gives
  at-least-once delivery with exactly one reported result.
- **cancellation**: the cancel channel, and the cancel keys checked at intake and every heartbeat.

On SIGTERM it stops taking work, lets running jobs finish (``drain_timeout_s``), and hands back the
rest with their idle time set past ``claim_idle_s`` so another worker takes them over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from eqr.server.broker.base import InvalidParam, JobState, Overloaded, Unavailable
from eqr.server.broker.local import LocalBroker, LocalJob
from eqr.server.broker.redis import REDIS_ERRORS, connect, ensure_group
from eqr.server.broker.redis_protocol import (
    GROUP,
    RENEW,
    STORE,
    Delivery,
    Keys,
    RedisOptions,
    decode_entry,
    encode_card,
    encode_event,
    encode_result,
    entry_job_id,
    failed_result,
)
from eqr.server.jobs import IterationEvent, Job, SolveResult, Status
from eqr.server.metrics import Metrics
from eqr.server.settings import Settings

log = logging.getLogger(__name__)

BLOCK_MS = 1000  # longest XREADGROUP wait: bounds how late a stop is noticed
OUTBOX_FLUSH_S = 10.0  # at shutdown, how long stores may keep retrying against a Redis that is down


@dataclass(eq=False)
class Assignment:
    """A stream entry this worker owns: its job, its handle in the local engine, and its fate."""

    entry_id: str
    delivery: Delivery
    deliveries: int
    handle: LocalJob | None = None
    computing: bool = True  # holds (or waits for) slots
    cancel_requested: bool = False  # by the caller: a cancelled result is then the real answer
    abandoned: bool = False  # another worker owns the entry now: never store this copy
    storing: bool = False  # its result is in the outbox (STORE settles any race with another copy)
    marked_running: bool = False

    @property
    def job(self) -> Job:
        return self.delivery.job

    @property
    def trajectories(self) -> int:
        return self.job.params.breadth


@dataclass(frozen=True)
class _Store:
    entry_id: str
    job_id: str
    reply: str
    envelope: str


@dataclass(frozen=True)
class _Event:
    reply: str
    event: IterationEvent


class Worker:
    """The Redis pumps around one LocalBroker; :meth:`run` until :meth:`request_stop`."""

    def __init__(
        self,
        local: LocalBroker,
        client: Redis,
        options: RedisOptions,
        metrics: Metrics,
        *,
        name: str,
        prefetch: int,
        job_ttl_s: float,
        drain_timeout_s: float,
        metrics_port: int,
    ) -> None:
        self.name = name
        self.metrics_port = metrics_port  # the one it bound, advertised: with --metrics-port 0 only it knows
        self.options = options
        self.keys = Keys(options.prefix)
        self._local = local
        self._client = client
        self._store_script = client.register_script(STORE)
        self._renew_script = client.register_script(RENEW)
        self._capacity = local.card.caps["slots"] + prefetch
        self._result_ttl_ms = int(job_ttl_s * 1000)
        self._drain_timeout_s = drain_timeout_s
        self._assigned: dict[str, Assignment] = {}  # by entry id
        self._by_job: dict[str, Assignment] = {}
        self._backlog: deque[Assignment] = deque()  # taken, but the engine queue was full
        self._outbox: asyncio.Queue[_Store | _Event | None] = asyncio.Queue()
        self._room_freed = asyncio.Event()
        self._stop = asyncio.Event()
        self._stopping = False
        self._followers: set[asyncio.Task[None]] = set()
        self.redis_ok = False
        self.redis_error = "not connected yet"
        self.running = False
        self._last_beat = time.monotonic()
        r = metrics.registry
        self._jobs = Counter(
            "eqr_worker_jobs",
            "Results this worker stored (stored) or found stored by an earlier delivery (duplicate)",
            ["outcome"],
            registry=r,
        )
        self._dead = Counter("eqr_worker_dead_letters", "Jobs this worker moved to the dead-letter stream", registry=r)
        self._reclaimed = Counter(
            "eqr_worker_reclaimed", "Pending jobs this worker took over from a dead or stopped worker", registry=r
        )
        Gauge("eqr_redis_up", "1 when this process reached Redis at its last attempt", registry=r).set_function(
            lambda: float(self.redis_ok)
        )

    # -- lifecycle --------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        await self._local.start()
        with contextlib.suppress(*REDIS_ERRORS):
            await ensure_group(self._client, self.keys)
        intake = [asyncio.create_task(self._read_loop()), asyncio.create_task(self._reclaim_loop())]
        service = [asyncio.create_task(self._heartbeat_loop()), asyncio.create_task(self._cancel_loop())]
        outbox = asyncio.create_task(self._outbox_loop())
        self.running = True
        log.info("worker %s serving %r with room for %d trajectories", self.name, self._local.card.name, self._capacity)
        await self._stop.wait()
        log.info("worker %s stopping: no new jobs, up to %.0f s for running ones", self.name, self._drain_timeout_s)
        await _cancel(intake)
        for a in list(self._backlog):
            a.computing = False
        self._backlog.clear()
        await self._local.drain(self._drain_timeout_s)
        self._stopping = True
        await self._local.close()  # what is left ends cancelled; _follow keeps those entries for release
        if self._followers:
            await asyncio.wait(self._followers, timeout=5.0)
        self._outbox.put_nowait(None)
        await asyncio.wait({outbox}, timeout=OUTBOX_FLUSH_S)
        await _cancel([outbox, *service])
        with contextlib.suppress(*REDIS_ERRORS):  # if Redis is down, the entries go idle and are claimed later
            await self._release(list(self._assigned))
        with contextlib.suppress(*REDIS_ERRORS):  # gone from the API's view now, not after the heartbeat TTL
            await self._client.delete(self.keys.worker(self.name))
            await self._client.srem(self.keys.workers, self.name)
        self.running = False
        await self._client.aclose()
        log.info("worker %s stopped", self.name)

    def health(self) -> tuple[bool, str]:
        """For /healthz (called from the HTTP thread): Redis reachable, engine sound, loop alive."""
        if not self.running:
            return False, "starting" if not self._stopping else "stopping"
        if not self.redis_ok:
            return False, f"Redis is unreachable: {self.redis_error}"
        stale = time.monotonic() - self._last_beat
        if stale > self.options.worker_ttl_s:
            return False, f"no heartbeat for {stale:.0f} s: the event loop is stuck"
        readiness = self._local.readiness()
        return readiness.ready, readiness.reason

    # -- intake -----------------------------------------------------------------------------------------

    def _room(self) -> int:
        """Trajectories this worker may still take: slots plus prefetch, minus what it holds."""
        return self._capacity - sum(a.trajectories for a in self._assigned.values() if a.computing)

    async def _read_loop(self) -> None:
        while True:
            while self._backlog:
                if not await self._submit(self._backlog.popleft(), from_backlog=True):
                    break
            room = self._room()
            if room <= 0 or self._backlog:
                self._room_freed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._room_freed.wait(), BLOCK_MS / 1000)
                continue
            try:
                reply = await self._client.xreadgroup(
                    GROUP, self.name, {self.keys.jobs: ">"}, count=room, block=BLOCK_MS
                )
                self._up()
            except REDIS_ERRORS as exc:
                await self._on_redis_error(exc)
                continue
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    await self._take(entry_id, fields, deliveries=1)

    async def _reclaim_loop(self) -> None:
        """Take over entries idle past ``claim_idle_s``: their owner stopped renewing its lease."""
        idle_ms = int(self.options.claim_idle_s * 1000)
        period = max(0.2, self.options.claim_idle_s / 4)
        rounds = 0
        while True:
            await asyncio.sleep(period)
            rounds += 1
            if rounds % 64 == 0:
                with contextlib.suppress(*REDIS_ERRORS):
                    await self._prune_consumers()
            room = self._room()
            if room <= 0:
                continue
            try:
                _, claimed, _ = await self._client.xautoclaim(
                    self.keys.jobs, GROUP, self.name, min_idle_time=idle_ms, start_id="0-0", count=room
                )
                claimed = [(i, f) for i, f in claimed if f and i not in self._assigned]
                if not claimed:
                    continue
                async with self._client.pipeline(transaction=False) as pipe:
                    for entry_id, _ in claimed:
                        pipe.xpending_range(self.keys.jobs, GROUP, min=entry_id, max=entry_id, count=1)
                    pending = await pipe.execute()
            except REDIS_ERRORS as exc:
                await self._on_redis_error(exc)
                continue
            for (entry_id, fields), info in zip(claimed, pending, strict=True):
                deliveries = info[0]["times_delivered"] if info else self.options.max_deliveries + 1
                log.warning("reclaimed job entry %s (delivery %d)", entry_id, deliveries)
                self._reclaimed.inc()
                await self._take(entry_id, fields, deliveries=deliveries)

    async def _prune_consumers(self) -> None:
        """Drop consumers that hold nothing and have not read for long: dead workers' names (host-pid)
        would otherwise pile up in the group forever. A live worker reads every second."""
        forgotten_ms = int(max(60.0, 10 * self.options.claim_idle_s) * 1000)
        for consumer in await self._client.xinfo_consumers(self.keys.jobs, GROUP):
            if consumer["pending"] == 0 and consumer["idle"] > forgotten_ms and consumer["name"] != self.name:
                await self._client.xgroup_delconsumer(self.keys.jobs, GROUP, consumer["name"])

    async def _take(self, entry_id: str, fields: dict[str, str], deliveries: int) -> None:
        if entry_id in self._assigned:
            return
        try:
            delivery = decode_entry(fields)
        except (ValueError, KeyError, TypeError) as exc:
            await self._dead_letter(entry_id, fields, deliveries, f"unreadable job entry: {exc}")
            return
        if deliveries > self.options.max_deliveries:
            reason = (
                f"dead-lettered after {deliveries} deliveries (max_deliveries {self.options.max_deliveries}): "
                "the workers that took this job died or stopped before finishing it"
            )
            await self._dead_letter(entry_id, fields, deliveries, reason)
            return
        a = Assignment(entry_id, delivery, deliveries)
        self._assigned[entry_id] = a
        self._by_job[a.job.id] = a
        with contextlib.suppress(*REDIS_ERRORS):
            a.cancel_requested = bool(await self._client.exists(self.keys.cancel(a.job.id)))
        await self._submit(a)

    async def _submit(self, a: Assignment, from_backlog: bool = False) -> bool:
        """Hand ``a`` to the engine; False when its queue is full (``a`` then waits in the backlog)."""
        try:
            a.handle = await self._local.submit(a.job, stream=a.delivery.stream, keep=a.delivery.keep)
        except Overloaded:
            (self._backlog.appendleft if from_backlog else self._backlog.append)(a)
            return False
        except InvalidParam as exc:
            a.computing = False
            self._store(a.entry_id, a.delivery, a.deliveries, failed_result(a.job, f"invalid job: {exc}"))
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
                        self._outbox.put_nowait(_Event(a.delivery.reply, event))
            result = await a.handle.result()
        except Unavailable:
            pass  # the engine stopped without a result
        finally:
            a.computing = False
            self._room_freed.set()
        if a.abandoned:
            self._forget(a.entry_id)
        elif result is None or (self._stopping and result.status is Status.CANCELLED and not a.cancel_requested):
            pass  # cut short by our own shutdown, not an answer: the entry goes back to the stream
        else:
            self._store(a.entry_id, a.delivery, a.deliveries, result)

    async def _dead_letter(self, entry_id: str, fields: dict[str, str], deliveries: int, reason: str) -> None:
        """Park the entry in the dead-letter stream and answer its caller with a failed result."""
        log.error("job entry %s: %s", entry_id, reason)
        self._dead.inc()
        record = {**fields, "entry_id": entry_id, "deliveries": str(deliveries), "reason": reason, "worker": self.name}
        try:
            await self._client.xadd(self.keys.dead, record, maxlen=self.options.dead_maxlen, approximate=True)
        except REDIS_ERRORS as exc:
            await self._on_redis_error(exc)
            return  # still pending: the next claim retries
        try:
            delivery = decode_entry(fields)
        except (ValueError, KeyError, TypeError):
            job_id = entry_job_id(fields)
            if job_id is None:  # nobody to answer: just take it out of the stream
                with contextlib.suppress(*REDIS_ERRORS):
                    await self._client.xack(self.keys.jobs, GROUP, entry_id)
                    await self._client.xdel(self.keys.jobs, entry_id)
                return
            delivery = Delivery(Job(digits=[], id=job_id), fields.get("reply", ""), False, fields.get("keep") == "1")
        self._store(entry_id, delivery, deliveries, failed_result(delivery.job, reason))

    # -- outbox -----------------------------------------------------------------------------------------

    def _store(self, entry_id: str, delivery: Delivery, deliveries: int, result: SolveResult) -> None:
        envelope = encode_result(result, worker=self.name, deliveries=deliveries, kept=delivery.keep)
        if (a := self._assigned.get(entry_id)) is not None:
            a.storing = True
        self._outbox.put_nowait(_Store(entry_id, delivery.job.id, delivery.reply, envelope))

    async def _outbox_loop(self) -> None:
        """Publish events and store results strictly in order, so a caller sees events before the result."""
        while True:
            batch = [await self._outbox.get()]
            while not self._outbox.empty() and len(batch) < 256:
                batch.append(self._outbox.get_nowait())
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
            async with self._client.pipeline(transaction=False) as pipe:
                for e in events:
                    pipe.publish(e.reply, encode_event(e.event))
                await pipe.execute()
        except REDIS_ERRORS as exc:
            self._down(exc)

    async def _store_until_done(self, item: _Store) -> None:
        delay, give_up = 0.1, None
        while True:
            try:
                stored = await self._store_script(
                    keys=[self.keys.result(item.job_id), self.keys.kept(item.job_id), self.keys.jobs],
                    args=[item.envelope, self._result_ttl_ms, item.reply, GROUP, item.entry_id],
                )
                self._up()
                break
            except ResponseError as exc:  # Redis answered, and will answer the same again: do not loop
                log.error("could not store the result of job %s (%s); it will be redelivered", item.job_id, exc)
                self._forget(item.entry_id)  # no more lease renewals: the entry is reclaimed after claim_idle_s
                return
            except REDIS_ERRORS as exc:
                self._down(exc)
                if self._stopping:
                    give_up = give_up or time.monotonic() + OUTBOX_FLUSH_S
                    if time.monotonic() > give_up:
                        return  # still pending in Redis: another worker recomputes it
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)
        self._jobs.labels("stored" if stored == item.envelope else "duplicate").inc()
        self._forget(item.entry_id)

    # -- heartbeat, lease, cancellation -----------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            self._last_beat = time.monotonic()
            try:
                await self._beat()
                self._up()
            except REDIS_ERRORS as exc:
                await self._on_redis_error(exc)
            except Exception:
                log.exception("heartbeat failed")
            await asyncio.sleep(self.options.heartbeat_s)

    async def _beat(self) -> None:
        stats = self._local.stats()
        doc = {
            "name": self.name,
            "card": encode_card(self._local.card),
            "slots": stats.capacity,
            "live_slots": stats.live_slots,
            "queue_depth": stats.queue_depth,
            "in_flight": stats.in_flight,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "metrics_port": self.metrics_port,
        }
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.set(self.keys.worker(self.name), json.dumps(doc), px=int(self.options.worker_ttl_s * 1000))
            pipe.sadd(self.keys.workers, self.name)
            await pipe.execute()
        held = list(self._assigned.values())
        if not held:
            return
        lost = await self._renew_script(keys=[self.keys.jobs], args=[GROUP, self.name, *(a.entry_id for a in held)])
        for entry_id in lost:
            self._abandon(entry_id)
        computing = [a for a in held if a.computing and not a.abandoned]
        if computing:
            flags = await self._client.mget([self.keys.cancel(a.job.id) for a in computing])
            for a, flag in zip(computing, flags, strict=True):
                if flag is not None:
                    self._cancel_job(a.job.id)
        running = [a for a in computing if a.delivery.keep and not a.marked_running and _started(a)]
        if running:
            async with self._client.pipeline(transaction=False) as pipe:
                for a in running:
                    pipe.set(self.keys.kept(a.job.id), "running", xx=True, keepttl=True)
                await pipe.execute()
            for a in running:
                a.marked_running = True

    async def _cancel_loop(self) -> None:
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self.keys.cancel_channel)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self._cancel_job(message["data"])
            except REDIS_ERRORS as exc:
                self._down(exc)  # the heartbeat's look at the cancel keys covers the gap
            finally:
                with contextlib.suppress(*REDIS_ERRORS):
                    await pubsub.aclose()
            await asyncio.sleep(min(1.0, self.options.heartbeat_s))

    def _cancel_job(self, job_id: str) -> None:
        a = self._by_job.get(job_id)
        if a is None or a.cancel_requested or not a.computing:
            return
        a.cancel_requested = True
        if a.handle is not None:
            a.handle.cancel()  # the engine frees its slots at the next step; the result says cancelled

    def _abandon(self, entry_id: str) -> None:
        """Another worker owns the entry (or it was completed): stop computing a copy nobody will use."""
        a = self._assigned.get(entry_id)
        if a is None or a.storing:  # a store that just acked it, or one that will find the winner's result
            return
        log.warning("lost the lease on job %s to another worker; dropping the local copy", a.job.id)
        a.abandoned = True
        if a in self._backlog:
            self._backlog.remove(a)
        if a.handle is not None and a.computing:
            a.handle.cancel()
        else:
            self._forget(entry_id)

    def _forget(self, entry_id: str) -> None:
        a = self._assigned.pop(entry_id, None)
        if a is not None and self._by_job.get(a.job.id) is a:
            del self._by_job[a.job.id]
        self._room_freed.set()

    async def _release(self, entry_ids: list[str]) -> None:
        """Hand entries back: idle time past ``claim_idle_s`` makes them claimable at once (JUSTID: the
        delivery count is not raised by this step, only by the next claim)."""
        if entry_ids:
            idle_ms = int(self.options.claim_idle_s * 1000) + 1
            await self._client.xclaim(self.keys.jobs, GROUP, self.name, 0, entry_ids, idle=idle_ms, justid=True)
            log.info("handed back %d unfinished job(s)", len(entry_ids))

    # -- Redis health -----------------------------------------------------------------------------------

    def _up(self) -> None:
        if not self.redis_ok:
            log.info("Redis is reachable")
        self.redis_ok = True

    def _down(self, exc: BaseException) -> None:
        if self.redis_ok:
            log.warning("Redis is unreachable: %s", exc)
        self.redis_ok = False
        self.redis_error = str(exc) or type(exc).__name__

    async def _on_redis_error(self, exc: BaseException) -> None:
        if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
            with contextlib.suppress(*REDIS_ERRORS):
                await ensure_group(self._client, self.keys)  # Redis came back empty
            return
        self._down(exc)
        await asyncio.sleep(min(1.0, self.options.heartbeat_s))


def _started(a: Assignment) -> bool:
    return a.handle is not None and a.handle.state is JobState.RUNNING


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def run_worker(
    settings: Settings, options: RedisOptions, *, name: str, prefetch: int, metrics_host: str, metrics_port: int
) -> int:
    """Load the model, serve /metrics and /healthz, and work until SIGTERM/SIGINT; exit status 0."""
    from eqr.server.ops_http import serve_ops

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    metrics = Metrics(model=settings.served_model_name, max_depth=settings.max_depth)
    holder: dict[str, Worker] = {}

    def health() -> tuple[bool, str]:
        worker = holder.get("worker")
        return worker.health() if worker is not None else (False, "loading the model")

    try:
        ops = serve_ops(metrics_host, metrics_port, metrics, health)
    except OSError as exc:  # most often a second worker on this host with the same port
        print(
            f"eqr worker: --metrics-port {metrics_port}: cannot listen on {metrics_host}:{metrics_port} "
            f"({exc.strerror or exc}); give each worker on a host its own port, or --metrics-port 0 for a free one",
            file=sys.stderr,
        )
        return 2
    log.info("loading model from %s", settings.model)
    local = LocalBroker.from_settings(settings, observer=metrics)
    metrics.track(lambda: local.stats().in_flight, local.card.caps["slots"])

    async def main() -> None:
        worker = Worker(
            local,
            connect(options.url),
            options,
            metrics,
            name=name,
            prefetch=prefetch,
            job_ttl_s=settings.job_ttl_s,
            drain_timeout_s=settings.drain_timeout_s,
            metrics_port=ops.server_port,
        )
        holder["worker"] = worker
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.request_stop)
        await worker.run()

    try:
        asyncio.run(main())
    finally:
        ops.shutdown()
    return 0
