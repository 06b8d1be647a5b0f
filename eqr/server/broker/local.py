"""The in-process broker: one :class:`~eqr.server.engine.engine.Engine` thread per served model behind the
Broker interface.

Each model has its own engine, slot pool and thread, so one model's load never takes another's slots:
a flood of maze requests queues behind maze requests only.

The engine completes futures and emits iteration events on its own thread; each such callback is
handed to the event loop with ``loop.call_soon_threadsafe``, so every piece of asyncio state here is
touched by the loop thread only. Both kinds of callback for one job travel through that same FIFO,
so a job's events always arrive before its result.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

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
)
from eqr.server.engine import interface as engine_errors  # the engine's, translated into the broker's own
from eqr.server.engine.engine import Engine, EngineConfig, EngineStopped
from eqr.server.engine.interface import EngineStats
from eqr.server.jobs import IterationEvent, Job, SolveResult
from eqr.server.metrics import Metrics
from eqr.server.settings import Settings

log = logging.getLogger(__name__)


class LocalJob(FutureJob):
    """A job's view from the event loop: a future for the result and, when streaming, an event queue."""

    def __init__(
        self,
        job: Job,
        loop: asyncio.AbstractEventLoop,
        *,
        cancel: Callable[[str], object],
        on_settled: Callable[[LocalJob], None],
        stream: bool,
    ) -> None:
        self.job = job
        self._loop = loop
        self._cancel = cancel
        self._on_settled = on_settled
        super().__init__(loop, stream)

    @property
    def id(self) -> str:
        return self.job.id

    async def result(self) -> SolveResult:
        # shielded: a caller that stops waiting (disconnect, timeout) must not destroy the result
        return await asyncio.shield(self._result)

    def cancel(self) -> None:
        if not self._result.done():
            self._cancel(self.id)

    # -- engine thread ------------------------------------------------------------------------------

    def on_engine_event(self, event: IterationEvent) -> None:
        self.mark_started()
        if self._events is not None:
            self._call_in_loop(self._events.put_nowait, event)

    def on_engine_done(self, future: concurrent.futures.Future[SolveResult]) -> None:
        self._call_in_loop(self._settle, future)

    def _call_in_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to tell
            self._loop.call_soon_threadsafe(fn, *args)

    # -- loop thread --------------------------------------------------------------------------------

    def _settle(self, future: concurrent.futures.Future[SolveResult]) -> None:
        if not self._result.done():
            error = None if future.cancelled() else future.exception()
            if future.cancelled() or isinstance(error, EngineStopped):
                self._result.set_exception(Unavailable(f"the engine stopped before job {self.id} finished"))
                self._result.exception()  # mark retrieved: kept jobs may never be awaited
            elif error is not None:
                self._result.set_exception(error)
                self._result.exception()
            else:
                self._result.set_result(future.result())
        if self._events is not None:
            self._events.put_nowait(END_OF_EVENTS)
        self._on_settled(self)


class LocalBroker:
    """Submits to in-process engines (one per model; the default ``default_model``, else the first);
    keeps async jobs' results for ``job_ttl_s``."""

    def __init__(
        self,
        engines: Engine | list[Engine],
        *,
        default_model: str | None = None,
        accuracy: dict[str, dict[str, Any] | None] | None = None,
        job_ttl_s: float = 600.0,
        stall_timeout_s: float = 30.0,
        error_window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        engines = engines if isinstance(engines, list) else [engines]
        self._engines = {e.model_name: e for e in engines}
        if len(self._engines) != len(engines):
            raise ValueError("two engines serve models of the same name")
        self.default_model = default_model or engines[0].model_name
        if self.default_model not in self._engines:
            raise ValueError(f"default model {self.default_model!r} is not one of the served {list(self._engines)}")
        first = sorted(engines, key=lambda e: e.model_name != self.default_model)  # the default first, stable
        self.cards = {e.model_name: _card(e, (accuracy or {}).get(e.model_name)) for e in first}
        self._ttl = job_ttl_s
        self._stall = stall_timeout_s
        self._error_window = error_window_s
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self._draining = False
        self._live: dict[str, LocalJob] = {}
        self._busy_since = 0.0  # monotonic time at which _live last became non-empty
        self._kept: dict[str, LocalJob] = {}
        self._expiry: OrderedDict[str, float] = OrderedDict()  # kept + finished, in finishing order
        self._idle = asyncio.Event()
        self._idle.set()

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics | None = None) -> LocalBroker:
        """Load every model of ``settings.model`` and build an engine for each; defaults come from each
        model's ``inference`` block."""
        from eqr.model.checkpoint import load_model
        from eqr.model.tasks.registry import task_for
        from eqr.runtime.step import preferred_slots

        engines, accuracy = [], {}
        for folder, name in zip(settings.model, settings.served_names, strict=True):
            model, meta = load_model(folder, device=settings.device)
            config = EngineConfig(
                slots=settings.slots or preferred_slots(model),
                max_queue=settings.max_queue,
                max_depth=settings.max_depth,
                max_breadth=settings.max_breadth,
                device=settings.device,
                threads=settings.threads,
                scheduler=settings.scheduler,
                max_saved_bytes=settings.max_saved_state_bytes,
            )
            task = task_for(meta)
            observer = (
                None if metrics is None else metrics.observer(name, task.name, config.slots, config.max_saved_bytes)
            )
            engine = Engine(
                model, config, model_name=name, task=task, defaults=meta.get("inference"), observer=observer
            )
            engines.append(engine)
            accuracy[name] = meta.get("accuracy")
            # which step serves the model, so a GPU deployment shows it really runs the GPU path
            step = type(engine.runner.stepper).__name__
            log.info("model %s: %d slots on %s, step %s", name, config.slots, config.device, step)
        return cls(
            engines,
            default_model=settings.default_model_name,
            accuracy=accuracy,
            job_ttl_s=settings.job_ttl_s,
            stall_timeout_s=settings.stall_timeout_s,
            error_window_s=settings.engine_error_window_s,
        )

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for engine in self._engines.values():
            engine.start()
        self._running = True

    async def submit(self, job: Job, *, stream: bool = False, keep: bool = False) -> LocalJob:
        self._purge()
        if self._draining:
            raise Unavailable("the server is shutting down and accepts no new work", code="draining")
        if not self._running or self._loop is None:
            raise Unavailable("the engine is not running")
        engine = self._engines[self.card(job.model or None).name]
        handle = LocalJob(job, self._loop, cancel=engine.cancel, on_settled=self._finished, stream=stream)
        # events are only produced for jobs that use them: streams, and kept jobs (to tell pending from running)
        on_event = handle.on_engine_event if (stream or keep) else None
        try:
            future = engine.submit(job, on_event=on_event)
        except engine_errors.Overloaded as exc:
            raise Overloaded(str(exc), exc.retry_after_s) from exc
        except EngineStopped as exc:
            raise Unavailable(str(exc)) from exc
        except engine_errors.InvalidParam as exc:
            raise InvalidParam(str(exc), field=exc.field) from exc
        if not self._live:
            self._busy_since = time.monotonic()
        self._live[job.id] = handle
        self._idle.clear()
        if keep:
            self._kept[job.id] = handle
        future.add_done_callback(handle.on_engine_done)
        return handle

    def card(self, name: str | None) -> ModelCard:
        card = self.cards.get(name or self.default_model)
        if card is None:
            raise UnknownModel(name or self.default_model, list(self.cards))
        return card

    def live_workers(self) -> dict[str, int]:
        """One process serves every model: this one."""
        return dict.fromkeys(self.cards, 1)

    async def get(self, job_id: str) -> LocalJob | None:
        self._purge()
        return self._kept.get(job_id)

    async def drain(self, timeout_s: float) -> bool:
        self._draining = True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        return not self._live

    async def close(self) -> None:
        self._draining = True
        if self._running:
            self._running = False
            # whatever still runs is cancelled; joining the engine threads must not block the loop
            for engine in self._engines.values():
                await asyncio.to_thread(engine.stop)
        await asyncio.sleep(0)  # let result callbacks queued by the stop land

    def stats(self) -> BrokerStats:
        """Summed over the models' engines."""
        every = [e.stats() for e in self._engines.values()]
        return BrokerStats(
            queue_depth=sum(s.queue_depth for s in every),
            live_slots=sum(s.live_slots for s in every),
            capacity=sum(s.capacity for s in every),
            in_flight=len(self._live),
        )

    def engine_stats(self) -> dict[str, EngineStats]:
        """Each model's engine's own stats (metrics are labelled by model)."""
        return {name: e.stats() for name, e in self._engines.items()}

    def readiness(self) -> Readiness:
        if self._draining:
            return Readiness(False, "draining", f"draining: admitting no work, {len(self._live)} request(s) finishing")
        if not self._running:
            return Readiness(False, "not_ready", "the engine is not running")
        for name, stats in self.engine_stats().items():
            problem = self._failing(stats) or self._stalled(stats)
            if problem is not None:  # with several models, say whose engine it is
                return problem if len(self._engines) == 1 else _named(problem, name)
        return Readiness(True)

    def _stalled(self, stats: EngineStats) -> Readiness | None:
        """Not ready while an engine with work made no step for ``stall_timeout_s``."""
        if not stats.in_flight:
            return None
        # progress = a step since the work arrived; an engine idle for hours is not stalled
        idle_s = time.monotonic() - max(stats.last_step_time or 0.0, self._busy_since)
        if idle_s <= self._stall:
            return None
        return Readiness(False, "not_ready", f"the engine made no step for {idle_s:.0f} s with work pending")

    def _failing(self, stats: EngineStats) -> Readiness | None:
        """Degraded while the latest model steps failed, for ``error_window_s`` after the last failure.

        A failed step fails only its own requests and the engine carries on, so one old error must not
        keep the server out of rotation forever: a successful step clears it at once, and the window
        lets an idle server (which has no step to succeed with) take traffic again and try.
        """
        if not stats.failed_steps or stats.last_failure_time is None:
            return None
        age_s = time.monotonic() - stats.last_failure_time
        if age_s >= self._error_window:
            return None
        return Readiness(
            False,
            "engine_error",
            f"the engine failed its last {stats.failed_steps} step(s), most recently {age_s:.1f} s ago: {stats.error}",
        )

    # -- bookkeeping (loop thread) ------------------------------------------------------------------

    def _finished(self, handle: LocalJob) -> None:
        self._live.pop(handle.id, None)
        if handle.id in self._kept:
            self._expiry[handle.id] = self._clock() + self._ttl
        if not self._live:
            self._idle.set()

    def _purge(self) -> None:
        """Forget kept jobs whose TTL passed; finishing order = expiry order, so this stops early."""
        now = self._clock()
        while self._expiry:
            job_id, expires = next(iter(self._expiry.items()))
            if expires > now:
                break
            del self._expiry[job_id]
            self._kept.pop(job_id, None)


def _card(engine: Engine, accuracy: dict[str, Any] | None) -> ModelCard:
    return ModelCard(
        name=engine.model_name,
        task=engine.task.name,
        task_spec=engine.task.spec(),
        arch=_arch_summary(engine.model),
        defaults=engine.defaults.as_dict(),
        caps=dict(engine.caps),
        accuracy=accuracy,
    )


def _named(readiness: Readiness, model: str) -> Readiness:
    return Readiness(readiness.ready, readiness.code, f"model {model!r}: {readiness.reason}")


def _arch_summary(model: Any) -> dict[str, Any]:
    cfg = model.cfg
    keys = ("hidden_size", "num_heads", "expansion", "L_layers", "H_cycles", "L_cycles", "mlp_t", "seq_len")
    return {
        **{k: getattr(cfg, k) for k in keys},
        "parameters": sum(p.numel() for p in model.parameters()),
        "blocks_per_iteration": cfg.blocks_per_step,
    }
