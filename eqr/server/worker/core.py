"""The worker itself: its parts wired together, its lifecycle, its health, and the ``eqr worker`` entry point."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

from prometheus_client import Counter, Gauge
from redis.asyncio import Redis

from eqr.model.checkpoint import CheckpointError
from eqr.server.broker.local import LocalBroker
from eqr.server.broker.redis import REDIS_ERRORS, connect
from eqr.server.broker.redis_health import RedisHealth
from eqr.server.broker.redis_protocol import Keys, RedisOptions
from eqr.server.metrics import Metrics
from eqr.server.settings import Settings
from eqr.server.worker.assignments import Assignments, WorkerContext
from eqr.server.worker.intake import Intake
from eqr.server.worker.lease import Lease
from eqr.server.worker.outbox import FLUSH_S, Outbox

log = logging.getLogger(__name__)


class Worker:
    """The Redis pumps around one LocalBroker (an engine per model it serves); :meth:`run` until
    :meth:`request_stop`."""

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
        self.metrics_port = metrics_port
        self.options = options
        self.keys = Keys(options.prefix)
        self._local = local
        self._client = client
        self._drain_timeout_s = drain_timeout_s
        self.health_of_redis = RedisHealth()
        r = metrics.registry
        jobs = Counter(
            "eqr_worker_jobs",
            "Results this worker stored (stored) or found stored by an earlier delivery (duplicate)",
            ["outcome"],
            registry=r,
        )
        dead = Counter("eqr_worker_dead_letters", "Jobs this worker moved to the dead-letter stream", registry=r)
        reclaimed = Counter(
            "eqr_worker_reclaimed", "Pending jobs this worker took over from a dead or stopped worker", registry=r
        )
        Gauge("eqr_redis_up", "1 when this process reached Redis at its last attempt", registry=r).set_function(
            lambda: float(self.health_of_redis.ok)
        )
        self.held = Assignments({model: card.caps["slots"] + prefetch for model, card in local.cards.items()})
        self._ctx = ctx = WorkerContext(name, local, client, options, self.held, self.health_of_redis)
        self.outbox = Outbox(ctx, result_ttl_ms=int(job_ttl_s * 1000), jobs=jobs)
        self.intake = Intake(ctx, self.outbox, dead=dead, reclaimed=reclaimed)
        self.lease = Lease(ctx, self.intake, metrics_port=metrics_port)
        self._stop = asyncio.Event()
        self._stopping = False
        self.running = False

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        await self._local.start()
        with contextlib.suppress(*REDIS_ERRORS):
            await self._ctx.ensure_groups()
        intake = [asyncio.create_task(self.intake.read_loop()), asyncio.create_task(self.intake.reclaim_loop())]
        service = [asyncio.create_task(self.lease.heartbeat_loop()), asyncio.create_task(self.lease.cancel_loop())]
        outbox = asyncio.create_task(self.outbox.run())
        self.running = True
        served = ", ".join(f"{model!r} (room for {room} trajectories)" for model, room in self.held.capacity.items())
        log.info("worker %s serving %s", self.name, served)
        await self._stop.wait()
        log.info("worker %s stopping: no new jobs, up to %.0f s for running ones", self.name, self._drain_timeout_s)
        await _cancel(intake)
        self.intake.stop()
        await self._local.drain(self._drain_timeout_s)
        self._stopping = self.intake.stopping = self.outbox.stopping = True
        await self._local.close()  # what is left ends cancelled; the intake keeps those entries for release
        await self.intake.settled(timeout_s=5.0)
        self.outbox.close()
        await asyncio.wait({outbox}, timeout=FLUSH_S)
        await _cancel([outbox, *service])
        with contextlib.suppress(*REDIS_ERRORS):  # if Redis is down, the entries go idle and are claimed later
            await self.lease.release()
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
        if not self.health_of_redis.ok:
            return False, self.health_of_redis.reason
        stale = time.monotonic() - self.lease.last_beat
        if stale > self.options.worker_ttl_s:
            return False, f"no heartbeat for {stale:.0f} s: the event loop is stuck"
        readiness = self._local.readiness()
        return readiness.ready, readiness.reason


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
    """Load the models, serve /metrics and /healthz, and work until SIGTERM/SIGINT; exit status 0 (2: a
    model folder that cannot be loaded, or a metrics port in use)."""
    from eqr.server.ops_http import serve_ops

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    metrics = Metrics(max_depth=settings.max_depth)
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
    log.info("loading models from %s", ", ".join(map(str, settings.model)))
    try:
        local = LocalBroker.from_settings(settings, metrics)
    except CheckpointError as exc:  # one line, as for a bad flag: weights missing, truncated, corrupted
        ops.shutdown()
        print(f"eqr worker: {exc}", file=sys.stderr)
        return 2
    metrics.track(lambda: local.stats().in_flight)

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
