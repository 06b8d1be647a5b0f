"""The Redis broker: the API node's side of the distributed mode (``eqr api --redis URL``).

No model is loaded here. The served models are those the live workers advertise in their
heartbeats; a job is validated against its model's card and appended to that model's jobs stream
(``ENQUEUE``: bounded, atomic), so only a worker that loaded the model reads it. Its answer comes
back on this node's reply channel, where workers publish iteration events and the stored result. The
channel is the fast path only: a sweep reads the result keys of everything still waiting, so an
announcement missed while Redis was restarting, or while this node was reconnecting, costs a sweep
period, never the answer.

A job counts as *accepted* once Redis has answered the ``ENQUEUE`` (202 for an async job, or a
``/v1/solve`` caller now waiting). From then on its entry or its result exists in Redis, so it
survives the death of any worker, and of Redis itself when Redis persists every write (``appendonly
yes``, ``appendfsync always``, as the compose stack runs it). If Redis comes back without its data,
the sweep notices that the job has neither entry nor result and fails the caller with 503 instead of
leaving it waiting forever. Layout and scripts: :mod:`eqr.server.broker.redis_protocol`.

A model whose last worker is gone stays known for ``model_memory_s`` (recorded in Redis, so every API
node agrees): requests for it get 503 ``model_unavailable`` with ``Retry-After`` instead of 404, a
synchronous caller waiting on it gets 504 ``worker_timeout`` after ``unserved_wait_s`` (its job
cancelled), and a cancel of a job no live worker holds is answered here, at once. The default model
is the API node's setting, never a worker's (docs/deployment/redis-workers.md).

Why one file of ~650 lines: a :class:`RedisJob` is settled only by its broker's poll, sweep and
reply listener, and the broker's bookkeeping exists only for its handles; the two are one
mechanism seen from both ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from eqr.server.broker.base import (
    END_OF_EVENTS,
    BrokerStats,
    FutureJob,
    InvalidParam,
    ModelCard,
    Overloaded,
    Readiness,
    Unavailable,
    UnknownModel,
    WorkerTimeout,
)
from eqr.server.broker.redis_health import RedisHealth
from eqr.server.broker.redis_protocol import (
    ENQUEUE,
    EVENT,
    GROUP,
    RESULT,
    STORE,
    Delivery,
    Entry,
    Keys,
    RedisOptions,
    decode_cards,
    decode_entry,
    decode_event,
    decode_marker,
    decode_result,
    encode_cards,
    encode_entry,
    encode_result,
)
from eqr.server.engine import interface as engine_errors  # the engine's, translated into the broker's own
from eqr.server.engine.plan import ModelDefaults, plan_job
from eqr.server.jobs import IterationEvent, Job, SolveResult, Status, unstarted_result

log = logging.getLogger(__name__)

PENDING_TTL_S = 86_400.0  # how long an async job's pending marker and a cancellation wait for a worker
REDIS_ERRORS = (RedisError, OSError)


def connect(url: str) -> Redis:
    """A client whose commands fail within seconds when Redis is gone, instead of hanging."""
    return Redis.from_url(url, decode_responses=True, socket_connect_timeout=2.0, socket_timeout=5.0)


async def ensure_group(client: Redis, stream: str) -> None:
    """Create a jobs stream and its consumer group, reading from the start (so entries appended before
    the group existed are delivered too); a no-op when they exist."""
    try:
        await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class RedisJob(FutureJob):
    """One job seen from this API node: a future for the result and, when streaming, an event queue."""

    def __init__(
        self, broker: RedisBroker, job_id: str, *, stream: bool, keep: bool, entry: Entry | None = None
    ) -> None:
        self._broker = broker
        self._id = job_id
        self.stream = stream
        self.keep = keep
        self.entry = entry  # its stream entry: once accepted by this node, or read from a kept job's marker
        self.since = time.time()  # when this node started waiting for it
        self.swept = False  # the sweep has seen its result once (streams wait one period for the channel)
        super().__init__(asyncio.get_running_loop(), stream)

    @property
    def id(self) -> str:
        return self._id

    @property
    def done(self) -> bool:
        return self._result.done()

    async def result(self) -> SolveResult:
        if not self._result.done():
            self._broker.watch(self)  # a handle from get() is only swept once somebody waits on it
        return await asyncio.shield(self._result)

    def cancel(self) -> None:
        if not self._result.done():
            self._broker.cancel_soon(self)

    # -- fed by the broker ----------------------------------------------------------------------------

    def _event(self, event: IterationEvent) -> None:
        self.mark_started()
        if self._events is not None and not self._result.done():
            self._events.put_nowait(event)

    def _settle(self, result: SolveResult) -> None:
        if not self._result.done():
            self._result.set_result(result)
            self._close_events()

    def _fail(self, error: Exception) -> None:
        if not self._result.done():
            self._result.set_exception(error)
            self._result.exception()  # mark retrieved: kept jobs may never be awaited
            self._close_events()

    def _close_events(self) -> None:
        if self._events is not None:
            self._events.put_nowait(END_OF_EVENTS)


class RedisBroker:
    """The Broker interface over Redis streams; workers (``eqr worker``) do the computing.

    ``cards``, refreshed every poll: the models live workers serve, and those served within
    ``model_memory_s`` whose workers are all gone (their jobs wait in their streams for the next
    worker); ``default_model`` first, the others in name order, so the order never depends on which
    workers run or what they are called. A model served by several workers gets the card of the first
    in name order: workers of one model are expected to share its settings.
    """

    cards: dict[str, ModelCard]

    def __init__(
        self, options: RedisOptions, *, default_model: str, job_ttl_s: float = 600.0, client: Redis | None = None
    ) -> None:
        self.options = options
        self.default_model = default_model
        self.keys = Keys(options.prefix)
        self.node = uuid.uuid4().hex[:12]
        self._reply = self.keys.reply(self.node)
        self._client = client or connect(options.url)
        self._enqueue = self._client.register_script(ENQUEUE)
        self._store = self._client.register_script(STORE)
        self._result_ttl_ms = int(job_ttl_s * 1000)  # of a cancelled result this node stores itself
        self._poll_s = min(0.5, options.heartbeat_s / 2)
        self.cards = {}
        self._live: dict[str, int] = {}  # live workers per card
        self._served_at: dict[str, float] = {}  # per card: when a live worker last served it (epoch s)
        self._workers: list[dict[str, Any]] = []
        self._unreadable: set[str] = set()  # workers whose heartbeat this version cannot read (warned once)
        self._backlog = 0  # jobs in the served models' streams not yet delivered to any worker
        self.health = RedisHealth()
        self._subscription = asyncio.Event()  # set while subscribed
        self._recovering = False  # Redis failed since the last full sweep: check for lost jobs
        self._waiting: dict[str, RedisJob] = {}  # jobs whose result this node waits for
        self._submitted: set[str] = set()  # ... of which submitted here (in flight, drained on SIGTERM)
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False
        self._closed = False
        self._tasks: list[asyncio.Task[None]] = []
        self._cancels: set[asyncio.Task[None]] = set()

    # -- Broker interface -----------------------------------------------------------------------------

    async def start(self) -> None:
        with contextlib.suppress(*REDIS_ERRORS):
            await self._poll()  # an early snapshot; a Redis that is down is retried in the background
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._poll_loop())]
        if self.health.ok:  # be subscribed before taking work, so no early event is missed
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._subscription.wait(), 5.0)

    async def submit(self, job: Job, *, stream: bool = False, keep: bool = False) -> RedisJob:
        if self._draining or self._closed:
            raise Unavailable("the server is shutting down and accepts no new work", code="draining")
        card = self.card(job.model or None)
        try:
            defaults = ModelDefaults.from_card(card.defaults, card.caps)  # the plan the worker's engine will resolve
            plan_job(job, model=card.name, task=card.solver_task, defaults=defaults, caps=card.caps)
        except engine_errors.InvalidParam as exc:
            raise InvalidParam(str(exc), field=exc.field) from exc
        handle = RedisJob(self, job.id, stream=stream, keep=keep)
        self._track(handle, submitted=True)  # before the XADD: the answer may come back at once
        # the entry names its model even when the job named none: a worker serving several runs it on that one
        fields = encode_entry(Delivery(dataclasses.replace(job, model=card.name), self._reply, stream, keep))
        kept_ttl_ms = int(PENDING_TTL_S * 1000) if keep else 0
        args = [self.options.max_jobs, kept_ttl_ms, card.name, *(x for kv in fields.items() for x in kv)]
        try:
            entry_id = await self._enqueue(keys=[self.keys.jobs(card.name), self.keys.kept(job.id)], args=args)
        except REDIS_ERRORS as exc:
            self._untrack(handle)
            self._mark_down(exc)
            raise Unavailable(f"Redis is unreachable: {exc}") from exc
        if entry_id is None:
            self._untrack(handle)
            message = f"queue full: {self.options.max_jobs} unfinished jobs for model {card.name!r}"
            raise Overloaded(message, self.options.heartbeat_s)
        handle.entry = Entry(card.name, entry_id)
        return handle

    async def get(self, job_id: str) -> RedisJob | None:
        try:
            envelope, kept = await self._client.mget(self.keys.result(job_id), self.keys.kept(job_id))
        except REDIS_ERRORS as exc:
            raise Unavailable(f"Redis is unreachable: {exc}") from exc
        handle = self._waiting.get(job_id)
        if envelope is not None:
            result, meta = decode_result(envelope)
            if not meta.get("kept"):
                return None  # a synchronous request's result: not addressable by id
            handle = handle or RedisJob(self, job_id, stream=False, keep=True)
            handle._settle(result)
            return handle
        if kept is None:
            return handle if handle is not None and handle.keep else None
        marker = decode_marker(kept)
        handle = handle or RedisJob(self, job_id, stream=False, keep=True, entry=marker.entry)
        if marker.state == "running":
            handle.mark_started()
        return handle

    async def drain(self, timeout_s: float) -> bool:
        self._draining = True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        return not self._submitted

    async def close(self) -> None:
        """Stop listening. Synchronous callers still waiting lose their connection, so their jobs are
        cancelled; async (kept) jobs run on, and any API node can report them."""
        self._draining = self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        orphans = [h for h in self._waiting.values() if not h.done and not h.keep]
        if orphans:
            with contextlib.suppress(*REDIS_ERRORS, asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(self._send_cancel(h.id) for h in orphans)), 2.0)
        for handle in list(self._waiting.values()):
            handle._fail(Unavailable(f"the API node shut down before job {handle.id} finished"))
        await self._client.aclose()

    def stats(self) -> BrokerStats:
        workers = self._workers
        return BrokerStats(
            queue_depth=self._backlog + sum(int(w.get("queue_depth", 0)) for w in workers),
            live_slots=sum(int(w.get("live_slots", 0)) for w in workers),
            capacity=sum(int(w.get("slots", 0)) for w in workers),
            in_flight=len(self._submitted),
        )

    def card(self, name: str | None) -> ModelCard:
        """The card of model ``name`` (None: the default), if Redis is up and a live worker serves it."""
        if not self.health.ok:
            raise Unavailable(self.health.reason)
        wanted = name or self.default_model
        card = self.cards.get(wanted)
        if card is None and not self.cards:
            raise Unavailable("no live worker to run the job; start one with `eqr worker --redis URL`")
        if card is None and name is None:
            served = ", ".join(repr(c) for c in self.cards)
            raise Unavailable(
                f"the default model {wanted!r} has no live worker (served here: {served}); name a model in "
                "`model`, or start this API node with --default-model"
            )
        if card is None:
            raise UnknownModel(wanted, list(self.cards))
        if not self._live.get(wanted):
            retry = self.options.worker_ttl_s
            raise Unavailable(
                f"model {wanted!r} has no live worker now (one served it {self._unserved_for(wanted):.0f} s ago); "
                f"retry in {retry:.0f} s, or start `eqr worker` with its folder",
                code="model_unavailable",
                retry_after_s=retry,
            )
        return card

    def live_workers(self) -> dict[str, int]:
        return {name: self._live.get(name, 0) for name in self.cards}

    def readiness(self) -> Readiness:
        if self._draining:
            return Readiness(
                False, "draining", f"draining: admitting no work, {len(self._submitted)} request(s) finishing"
            )
        if not self.health.ok:
            return Readiness(False, "not_ready", self.health.reason)
        if not self._subscription.is_set():
            return Readiness(False, "not_ready", "not yet subscribed to this node's reply channel")
        if not self._workers:
            lost = f" (recently served, none live now: {', '.join(map(repr, self.cards))})" if self.cards else ""
            return Readiness(False, "not_ready", f"no live worker{lost}: start one with `eqr worker --redis URL`")
        return Readiness(True)

    def collector(self) -> Collector:
        """Prometheus series of the distributed state as this node sees it, read at scrape time."""
        return _StateCollector(self)

    # -- bookkeeping ------------------------------------------------------------------------------------

    def _track(self, handle: RedisJob, *, submitted: bool) -> None:
        self._waiting[handle.id] = handle
        if submitted:
            self._submitted.add(handle.id)
            self._idle.clear()
        handle._result.add_done_callback(lambda _: self._untrack(handle))

    def _untrack(self, handle: RedisJob) -> None:
        if self._waiting.get(handle.id) is handle:
            del self._waiting[handle.id]
        self._submitted.discard(handle.id)
        if not self._submitted:
            self._idle.set()

    def watch(self, handle: RedisJob) -> None:
        """Follow ``handle``'s job in the sweep (until it settles), for a handle made by :meth:`get`."""
        if handle.id not in self._waiting:
            self._track(handle, submitted=False)

    def _mark_down(self, exc: BaseException) -> None:
        self.health.down(exc)
        self._recovering = True

    def _unserved_for(self, model: str) -> float:
        """Seconds since a live worker last served ``model`` (0 while one does)."""
        return 0.0 if self._live.get(model) else max(0.0, time.time() - self._served_at.get(model, time.time()))

    def cancel_soon(self, handle: RedisJob) -> None:
        """``JobHandle.cancel`` must not block: the cancel goes out from a task of its own."""
        task = asyncio.get_running_loop().create_task(self._cancel(handle))
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)

    async def _cancel(self, handle: RedisJob) -> None:
        await self._send_cancel(handle.id)
        try:
            await self._cancel_unheld(handle)
        except REDIS_ERRORS as exc:  # the cancel key stays: a worker taking the job later cancels it
            log.warning("could not settle the cancel of job %s here: %s", handle.id, exc)

    async def _cancel_unheld(self, handle: RedisJob) -> None:
        """Store the cancelled result here when no live worker holds the job (it is still queued, or the
        worker that took it died), so the caller hears at once rather than when a worker next looks.

        The entry goes with it (STORE acks and deletes it). A worker that takes the entry in between
        finds the cancel key, and its own result loses to the stored one: one answer either way.
        """
        entry = handle.entry
        if entry is None:  # a kept job found by id before this node knew where it waits
            kept = await self._client.get(self.keys.kept(handle.id))
            entry = None if kept is None else decode_marker(kept).entry
        if entry is None:
            return  # finished (its result is stored) or expired
        stream = self.keys.jobs(entry.model)
        owner = await self._client.xpending_range(stream, GROUP, min=entry.id, max=entry.id, count=1)
        if owner and owner[0]["consumer"] in {w.get("name") for w in self._workers}:
            return  # a live worker has it: its cancelled result (with the iterations it ran) is the answer
        found = await self._client.xrange(stream, min=entry.id, max=entry.id, count=1)
        if not found:
            return  # completed meanwhile: the sweep brings its result
        try:
            delivery = decode_entry(found[0][1])
        except (ValueError, KeyError, TypeError):
            return  # unreadable: the worker that takes it dead-letters it
        result = unstarted_result(delivery.job, Status.CANCELLED)
        envelope = encode_result(result, worker=f"api-{self.node}", deliveries=0, kept=delivery.keep)
        keys = [self.keys.result(handle.id), self.keys.kept(handle.id), stream]
        stored = await self._store(keys=keys, args=[envelope, self._result_ttl_ms, delivery.reply, GROUP, entry.id])
        handle._settle(decode_result(stored)[0])

    async def _send_cancel(self, job_id: str) -> None:
        """A key for workers that pick the job up later, and a message for the one running it now."""
        for attempt in range(3):
            try:
                async with self._client.pipeline(transaction=True) as pipe:
                    pipe.set(self.keys.cancel(job_id), "1", px=int(PENDING_TTL_S * 1000))
                    pipe.publish(self.keys.cancel_channel, job_id)
                    await pipe.execute()
                return
            except REDIS_ERRORS as exc:
                if attempt == 2:
                    log.warning("could not cancel job %s: %s", job_id, exc)
                else:
                    await asyncio.sleep(0.5)

    # -- background: the reply channel and the poll -----------------------------------------------------

    async def _listen(self) -> None:
        """Hold a subscription to this node's reply channel, re-subscribing after any failure."""
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self._reply)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self._subscription.set()  # from here on no announcement can be missed
                    elif message["type"] == "message":
                        self._on_message(message["data"])
            except REDIS_ERRORS as exc:
                self._mark_down(exc)
            except Exception:
                log.exception("reply listener failed; re-subscribing")
            finally:
                self._subscription.clear()
                with contextlib.suppress(*REDIS_ERRORS):
                    await pubsub.aclose()
            await asyncio.sleep(self._poll_s)

    def _on_message(self, data: str) -> None:
        kind, body = data[:1], data[1:]
        try:
            if kind == EVENT:
                event = decode_event(body)
                if (handle := self._waiting.get(event.request_id)) is not None:
                    handle._event(event)
            elif kind == RESULT:
                result, _ = decode_result(body)
                if (handle := self._waiting.get(result.request_id)) is not None:
                    handle._settle(result)
        except (ValueError, KeyError, TypeError):
            log.exception("unreadable message on %s", self._reply)

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                await self._poll()
            except REDIS_ERRORS as exc:
                self._mark_down(exc)
            except Exception:
                log.exception("poll failed")

    async def _poll(self) -> None:
        """Refresh the workers, the cards and the backlog; sweep for results; check for lost jobs."""
        c, k = self._client, self.keys
        names = sorted(await c.smembers(k.workers))
        docs = await c.mget([k.worker(n) for n in names]) if names else []
        gone = [n for n, doc in zip(names, docs, strict=True) if doc is None]
        if gone:
            await c.srem(k.workers, *gone)
        workers: list[dict[str, Any]] = []
        live: dict[str, ModelCard] = {}
        counts: dict[str, int] = {}
        for name, doc in zip(names, docs, strict=True):
            served = None if doc is None else self._read_heartbeat(name, doc)
            if served is not None:
                workers.append(served[0])
                for card in served[1]:
                    live.setdefault(card.name, card)
                    counts[card.name] = counts.get(card.name, 0) + 1
        known = await self._remember(live)
        backlog = await self._undelivered(list(known))
        order = sorted(known, key=lambda n: (n != self.default_model, n))
        self.cards = {n: known[n][0] for n in order}
        self._served_at = {n: known[n][1] for n in order}
        self._workers, self._live, self._backlog = workers, counts, backlog
        self.health.up(f"{len(workers)} live worker(s)")
        self._expire_unserved_waits()
        recovering, self._recovering = self._recovering, False
        await self._sweep(check_lost=recovering)

    async def _remember(self, live: dict[str, ModelCard]) -> dict[str, tuple[ModelCard, float]]:
        """Record the live models as served now, and read back every model served within ``model_memory_s``
        (by any API node's account): name → its card (a live worker's, else the last one recorded) and when
        it was last served. Older ones are forgotten."""
        now = time.time()
        async with self._client.pipeline(transaction=False) as pipe:
            if live:
                cards = encode_cards(live)
                pipe.hset(self.keys.models, mapping={c["name"]: json.dumps({"card": c, "at": now}) for c in cards})
            pipe.hgetall(self.keys.models)
            recorded = (await pipe.execute())[-1]
        known: dict[str, tuple[ModelCard, float]] = {}
        forgotten = []
        for name, doc in recorded.items():
            try:
                record = json.loads(doc)
                card, served_at = decode_cards([record["card"]])[0], float(record["at"])
            except (ValueError, KeyError, TypeError):
                forgotten.append(name)  # unreadable: another version's record; a live worker rewrites it
                continue
            if name not in live and now - served_at > self.options.model_memory_s:
                forgotten.append(name)
            else:
                known[name] = (live.get(name, card), served_at)
        if forgotten:
            await self._client.hdel(self.keys.models, *forgotten)
        return known

    def _expire_unserved_waits(self) -> None:
        """Synchronous callers of a model without a live worker wait ``unserved_wait_s`` at most (counted
        from when it was last served, or from the job's arrival here if later); then they get 504 and the
        job is cancelled, so it does not run later for nobody. Async jobs wait on for the next worker."""
        limit = self.options.unserved_wait_s
        for handle in list(self._waiting.values()):
            model = handle.entry.model if handle.entry is not None else None
            if handle.done or handle.keep or model is None or self._live.get(model):
                continue
            waited = time.time() - max(self._served_at.get(model, handle.since), handle.since)
            if waited >= limit:
                handle._fail(
                    WorkerTimeout(
                        f"model {model!r} has had no live worker for {waited:.0f} s (limit {limit:g} s, "
                        f"--unserved-wait): job {handle.id} was cancelled; retry once a worker serves it again",
                        retry_after_s=self.options.worker_ttl_s,
                    )
                )
                self.cancel_soon(handle)

    def _read_heartbeat(self, name: str, doc: str) -> tuple[dict[str, Any], list[ModelCard]] | None:
        """A worker's heartbeat and its cards; None (warned once) for one this version cannot read."""
        try:
            heartbeat = json.loads(doc)
            return heartbeat, decode_cards(heartbeat["cards"])
        except (ValueError, KeyError, TypeError) as exc:
            if name not in self._unreadable:
                self._unreadable.add(name)
                log.warning("ignoring worker %s: unreadable heartbeat (%s); is it another version?", name, exc)
            return None

    async def _undelivered(self, models: list[str]) -> int:
        """Entries of these models' streams that no worker has read yet (length minus pending)."""
        if not models:
            return 0
        async with self._client.pipeline(transaction=False) as pipe:
            for model in models:
                pipe.xlen(self.keys.jobs(model))
                pipe.xpending(self.keys.jobs(model), GROUP)
            replies = await pipe.execute(raise_on_error=False)
        # NOGROUP: no worker created the model's group yet (or Redis came back empty), so none was read
        failed = [r for r in replies if isinstance(r, Exception) and "NOGROUP" not in str(r)]
        if failed:
            raise failed[0]
        pending = [r["pending"] if isinstance(r, dict) else 0 for r in replies[1::2]]
        return sum(max(0, length - read) for length, read in zip(replies[::2], pending, strict=True))

    async def _sweep(self, *, check_lost: bool) -> None:
        """Settle waiting jobs whose result is stored; after an outage, fail those Redis lost."""
        waiting = [h for h in self._waiting.values() if not h.done]
        if not waiting:
            return
        envelopes = await self._client.mget([self.keys.result(h.id) for h in waiting])
        missing = []
        for handle, envelope in zip(waiting, envelopes, strict=True):
            if envelope is None:
                missing.append(handle)
            elif handle.stream and self._subscription.is_set() and not handle.swept:
                handle.swept = True  # its events and result are on the channel; let them arrive in order
            else:
                handle._settle(decode_result(envelope)[0])
        if check_lost and missing:
            await self._fail_lost([h for h in missing if h.entry is not None])

    async def _fail_lost(self, handles: list[RedisJob]) -> None:
        """A job with neither a stream entry nor a result was lost by Redis (it came back without data).

        The entry is checked first: completion deletes it and stores the result in one step, so an
        entry gone *before* a result read that still finds nothing means no result will ever come.
        """
        async with self._client.pipeline(transaction=False) as pipe:
            for h in handles:
                assert h.entry is not None
                pipe.xrange(self.keys.jobs(h.entry.model), min=h.entry.id, max=h.entry.id, count=1)
            entries = await pipe.execute()
        gone = [h for h, found in zip(handles, entries, strict=True) if not found]
        if not gone:
            return
        results = await self._client.mget([self.keys.result(h.id) for h in gone])
        for handle, envelope in zip(gone, results, strict=True):
            if envelope is None:
                log.error("job %s was lost: Redis restarted without its data", handle.id)
                handle._fail(Unavailable(f"job {handle.id} was lost: Redis restarted without persistence"))


class _StateCollector(Collector):
    def __init__(self, broker: RedisBroker) -> None:
        self._broker = broker

    def collect(self) -> Iterator[GaugeMetricFamily]:
        b = self._broker
        yield GaugeMetricFamily(
            "eqr_redis_up", "1 when this API node reached Redis at its last poll", value=b.health.ok
        )
        yield GaugeMetricFamily("eqr_workers_live", "Workers with a live heartbeat", value=len(b._workers))
        per_model = GaugeMetricFamily(
            "eqr_model_workers",
            "Live workers serving each model known to this API node (0: served recently, none live now)",
            labels=["model"],
        )
        for model, count in b.live_workers().items():
            per_model.add_metric([model], count)
        yield per_model
        yield GaugeMetricFamily(
            "eqr_stream_backlog", "Jobs in the served models' Redis streams not yet read by a worker", value=b._backlog
        )
