"""The engine: a background thread looping schedule → run → postprocess over a slot pool.

Other threads (the API's event loop, a broker worker) only call :meth:`Engine.submit`,
:meth:`Engine.cancel`, :meth:`Engine.stats`, :meth:`Engine.drain` and :meth:`Engine.stop`; these
take a short lock, put work in an inbox and return. The engine thread alone touches the
scheduler, the slot pool and the model, and it resolves futures and calls ``on_event`` callbacks
(callers marshal them to their own loop). So the event loop never waits on the model.

Where things happen: a job's plan (its fields, preset and the model's defaults) in ``plan.py``;
the compute policies (depth, breadth, quorum, verified restarts, budget, aggregation, priority,
deadline) in ``policies.py``; a request and its trajectories in ``request.py``; queue policy,
admission and every eviction decided in ``scheduler.py``, as data; the runner applies those
decisions to the device buffers and runs the model (:mod:`eqr.runtime`: ``runner.py``,
``tracker.py``, ``slots.py``).

Why one file of ~370 lines: the thread-safe surface (submit, cancel, stats, drain, stop) and the
loop it feeds share one lock and one inbox; split, each half would reach into the other's state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import torch

from eqr.model.convergence import ConvergenceRule
from eqr.model.network import EqRNetwork
from eqr.model.tasks.base import Task
from eqr.runtime.runner import Runner
from eqr.runtime.slots import SlotPool
from eqr.server.engine.interface import (
    EngineConfig,
    EngineObserver,
    EngineStats,
    EngineStopped,
    InvalidParam,
    NullObserver,
    Overloaded,
)
from eqr.server.engine.plan import ModelDefaults, Plan, plan_job
from eqr.server.engine.policies import deadline
from eqr.server.engine.request import Request
from eqr.server.engine.scheduler import Ended, Progress, Scheduler
from eqr.server.jobs import IterationEvent, Job, SolveResult, Status, bare_failure

log = logging.getLogger(__name__)


def _call(fn: Callable[..., Any], *args: Any) -> None:
    """Run a callback from outside the engine (observer, on_event): its bugs must not stop the loop."""
    try:
        fn(*args)
    except Exception:
        log.exception("engine callback %r raised", fn)


def iteration_event(p: Progress) -> IterationEvent:
    """The stream event of a request's progress: one trajectory's board, in tokens (the API shows them),
    named by its index and, for verified mode's restarts, which restart it is."""
    t, r = p.trajectory, p.request
    restart = sum(u.restart for u in r.trajectories[: t.index + 1]) if t.restart else 0
    verified = t.verified if p.ended is not None and r.plan.verify else None
    board = [int(x) for x in p.tokens]
    return IterationEvent(r.id, p.iteration, board, p.residual, p.live, t.index, restart, p.ended, verified)


class Engine:
    """Continuous batching of EqR trajectories: a fixed pool of slots, refilled as trajectories leave."""

    def __init__(
        self,
        model: Any,
        config: EngineConfig,
        *,
        model_name: str = "model",
        task: Task,
        defaults: dict[str, Any] | None = None,
        observer: EngineObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``model``: an EqRNetwork (or anything with its ``cfg``, ``initial_state`` and ``iterate``)
        already on ``config.device``; ``defaults``: the model's ``inference`` metadata (depth, noise,
        window, tol, ...) from its config.json, resolved into :attr:`defaults` (a
        :class:`~eqr.server.engine.plan.ModelDefaults`); ``task``: the model folder's task (shapes and
        ``verify``); ``clock``: seconds, monotonic (arrival, aging, deadlines; tests pass a fake)."""
        if (task.seq_len, task.vocab_size) != (model.cfg.seq_len, model.cfg.vocab_size):
            raise ValueError(
                f"task {task.name!r} has {task.seq_len} cells of {task.vocab_size} tokens, "
                f"the model {model.cfg.seq_len} of {model.cfg.vocab_size}"
            )
        self.model = model
        self.config = config
        self.model_name = model_name
        self.task = task
        meta, cfg, rule = defaults or {}, model.cfg, ConvergenceRule()
        self.defaults = ModelDefaults.from_folder(
            meta,
            depth=min(int(config.default_depth or meta.get("depth") or cfg.halt_max_steps), config.max_depth),
            noise=float(meta.get("noise", cfg.noise_scale) if config.default_noise is None else config.default_noise),
            window=config.window or meta.get("window") or rule.window,
            tol=config.tol if config.tol is not None else meta.get("tol", rule.tol),
        )
        self.rule = ConvergenceRule(window=self.defaults.window, tol=self.defaults.tol)
        self.caps: dict[str, int] = {
            "depth": config.max_depth,
            "breadth": min(config.max_breadth, config.max_queue),
            "slots": config.slots,
            "queue": config.max_queue,
            "budget": config.max_budget,
        }
        self.clock = clock
        device = torch.device(config.device)
        if device.type == "cuda" and device.index is None:  # "cuda" is the current device, as tensors say it
            device = torch.device("cuda", torch.cuda.current_device())
        params = next(model.parameters(), None) if hasattr(model, "parameters") else None
        if params is not None and params.device != device:
            raise ValueError(f"model is on {params.device}, EngineConfig.device is {device}")
        self.pool = SlotPool(
            config.slots, cfg.seq_len, cfg.vocab_size, self.rule, model.initial_state, device, allowed=task.allowed
        )
        self.runner = Runner(self._stepper(model, config, self.pool), self.pool)
        self.scheduler = self._scheduler()
        self._observer: EngineObserver = observer or NullObserver()
        self._cond = threading.Condition()
        # shared with other threads, guarded by _cond
        self._inbox: list[Request] = []
        self._inbox_trajectories = 0
        self._cancels: set[str] = set()
        self._in_flight: dict[str, Request] = {}
        self._accepting = True
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._waiting = 0  # scheduler.waiting as of the last step, plus the inbox it took since
        self._queued_requests = 0
        self._live = 0
        self._preempted = 0
        self._saved_shown = False
        self._steps = 0
        self._last_step_time: float | None = None
        self._last_step_duration = 0.0
        self._error: str | None = None
        self._failed_steps = 0  # consecutive: reset by a step whose model call succeeds
        self._last_failure: float | None = None
        self._left_ema = 0.0  # trajectories leaving slots per step, and step seconds (for retry hints)
        self._step_s_ema = 0.0

    # -- public interface (any thread) ------------------------------------------------------------

    def submit(self, job: Job, on_event: Callable[[IterationEvent], None] | None = None) -> Future[SolveResult]:
        """Queue ``job``; the future resolves with its result (never with an exception).

        Raises :class:`InvalidParam` (a ``ValueError`` naming the field), :class:`Overloaded` or
        :class:`EngineStopped`. ``on_event`` is called from the engine thread every
        ``stream_every`` iterations. Cancel through :meth:`cancel`; ``Future.cancel`` is refused.
        """
        request = self._request(job, on_event)
        breadth = len(request.trajectories)
        with self._cond:
            if not self._accepting:
                raise EngineStopped("the engine is shutting down and accepts no new work")
            if job.id in self._in_flight:
                raise InvalidParam("id", f"request {job.id!r} is already in flight")
            queued = self._waiting + self._inbox_trajectories
            if queued + breadth > self.config.max_queue:
                raise Overloaded(
                    f"queue full: {queued} trajectories waiting, {breadth} more would exceed {self.config.max_queue}",
                    self._retry_after(queued + breadth - self.config.max_queue),
                )
            self._inbox.append(request)
            self._inbox_trajectories += breadth
            self._in_flight[job.id] = request
            self._cond.notify_all()
        return request.future

    def cancel(self, request_id: str) -> bool:
        """Cancel a request in flight: its slots are free after the next step, its result says cancelled."""
        with self._cond:
            if request_id not in self._in_flight:
                return False
            self._cancels.add(request_id)
            self._cond.notify_all()
            return True

    def stats(self) -> EngineStats:
        with self._cond:
            return EngineStats(
                queue_depth=self._waiting + self._inbox_trajectories,
                queued_requests=self._queued_requests + len(self._inbox),
                live_slots=self._live,
                capacity=self.config.slots,
                in_flight=len(self._in_flight),
                steps=self._steps,
                last_step_time=self._last_step_time,
                last_step_duration_s=self._last_step_duration,
                error=self._error,
                draining=not self._accepting,
                failed_steps=self._failed_steps,
                last_failure_time=self._last_failure,
                preempted=self._preempted,
                saved_bytes=self._preempted * self.pool.row_bytes,
            )

    def _scheduler(self) -> Scheduler:
        c = self.config
        return Scheduler(c.slots, c.aging_per_s, c.scheduler, max_saved=c.max_saved_bytes // self.pool.row_bytes)

    @staticmethod
    def _stepper(model: Any, config: EngineConfig, pool: SlotPool) -> Any:
        """The object whose ``iterate`` the runner calls: the fastest step for a real network."""
        if not (config.fast_step and isinstance(model, EqRNetwork)):
            return model  # test doubles and wrappers keep their own iterate
        from eqr.runtime.step import make_step

        return make_step(model, pool.batch())

    def start(self) -> None:
        """Start the step thread (a daemon)."""
        with self._cond:
            if self._thread is not None or self._stopping:
                raise RuntimeError("an engine starts once")
            self._thread = threading.Thread(target=self._loop, name="eqr-engine", daemon=True)
        self._thread.start()

    def drain(self, timeout: float) -> bool:
        """Stop admitting; wait up to ``timeout`` s for the work in flight. True if all of it finished."""
        with self._cond:
            self._accepting = False
            if self._thread is not None and self._thread.is_alive():
                return self._cond.wait_for(lambda: not self._in_flight, timeout)
        end = time.monotonic() + timeout  # no thread (tests): drive the steps here
        while self._in_flight and time.monotonic() < end:
            self.step()
        return not self._in_flight

    def stop(self, drain_timeout: float | None = None) -> None:
        """Stop admitting, let work in flight finish for up to ``drain_timeout`` s (None: no wait),
        cancel the rest (results with status cancelled and their best-so-far answers), join."""
        if drain_timeout:
            self.drain(drain_timeout)
        with self._cond:
            self._accepting = False
            self._stopping = True
            thread = self._thread
            self._cond.notify_all()
        if thread is threading.current_thread():
            raise RuntimeError("stop() called from the engine thread (e.g. inside a callback)")
        if thread is not None:
            thread.join()
        else:
            self._shutdown()

    # -- the engine thread --------------------------------------------------------------------------

    def step(self) -> None:
        """One schedule → run → postprocess pass; the engine thread loops on it, tests call it directly."""
        t0 = time.perf_counter()
        with self._cond:
            inbox, self._inbox = self._inbox, []
            self._waiting += self._inbox_trajectories
            self._inbox_trajectories = 0
            cancels, self._cancels = self._cancels, set()
        s, runner = self.scheduler, self.runner
        for request in inbox:
            s.add(request)
        decision = s.schedule(self.clock(), cancels)
        ended = s.settle(decision, runner.apply(decision))
        progress: list[Progress] = []
        ran = s.live
        if ran:
            try:
                leaving = runner.run()
            except Exception as exc:  # fail the requests of this step, keep serving the queue
                log.exception("model step failed on %d slots", ran)
                self._record_failure(exc)
                decision = s.fail_live(f"model step failed: {type(exc).__name__}: {exc}")
                ended += s.settle(decision, runner.apply(decision))
                ran = 0
            else:
                if self._failed_steps:  # only this thread writes it: reading without the lock is safe
                    with self._cond:
                        self._failed_steps = 0
                read = s.observe(leaving)
                decision, progress = s.postprocess(leaving, runner.read(read) if read else None)
                ended += s.settle(decision, runner.apply(decision))
        self._publish(ended, progress, ran, time.perf_counter() - t0)

    def _loop(self) -> None:
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or bool(self._in_flight))
                if self._stopping:
                    break
            try:
                self.step()
            except Exception as exc:
                self._crash(exc)
        self._shutdown()

    def _publish(self, ended: list[Ended], progress: list[Progress], ran: int, dt: float) -> None:
        """Publish a step: shared counters, observer hooks, stream events, then results."""
        s = self.scheduler
        evictions, moves = dict(s.evictions), dict(s.moves)
        s.evictions.clear()
        s.moves.clear()
        with self._cond:
            for request, _ in ended:
                self._in_flight.pop(request.id, None)
            self._waiting, self._queued_requests, self._live = s.waiting, s.queued_requests, s.live
            self._preempted = s.preempted
            self._steps += 1
            self._last_step_time = time.monotonic()
            self._last_step_duration = dt
            if ran:
                self._left_ema = 0.9 * self._left_ema + 0.1 * sum(evictions.values())
                self._step_s_ema = 0.9 * self._step_s_ema + 0.1 * dt
            self._cond.notify_all()
        obs = self._observer
        _call(obs.on_step, dt, self._live, self.config.slots, self._waiting)
        if ran:
            _call(obs.on_iterations, ran)
        for reason, count in evictions.items():
            _call(obs.on_evict, reason, count)
        saved = self.runner.saved_bytes
        if any(moves.values()) or saved or self._saved_shown:
            self._saved_shown = bool(saved)  # once more after the last saved state went: the gauge reads 0
            _call(obs.on_preemption, moves.get("preempted", 0), moves.get("resumed", 0), saved,
                  self.config.max_saved_bytes)  # fmt: skip
        for p in progress:
            _call(p.request.on_event, iteration_event(p))
        for request, result in ended:
            _call(obs.on_finished, result, request.job)
            request.future.set_result(result)

    def _shutdown(self) -> None:
        """Engine stop: whatever is still in flight ends cancelled, with its best-so-far answer."""
        with self._cond:
            inbox, self._inbox, self._inbox_trajectories = self._inbox, [], 0
        try:
            for request in inbox:
                self.scheduler.add(request)
            decision = self.scheduler.end_all(Status.CANCELLED)
            ended = self.scheduler.settle(decision, self.runner.apply(decision))
        except Exception as exc:
            self._crash(exc)
            return
        self._publish(ended, [], 0, 0.0)

    def _crash(self, exc: Exception) -> None:
        """A fault outside the model step leaves the state suspect: fail everything in flight and
        start again with an empty pool, so the loop keeps serving new work."""
        log.exception("engine step failed; failing every request in flight")
        error = f"engine error: {type(exc).__name__}: {exc}"
        with self._cond:
            lost = list(self._in_flight.values())
            self._in_flight.clear()
            self._inbox, self._inbox_trajectories, self._cancels = [], 0, set()
            self._waiting = self._queued_requests = self._live = 0
            self._cond.notify_all()
        self._record_failure(exc)
        self.pool.owners.clear()
        self.runner.saved.clear()
        self.runner.kept.clear()
        self.scheduler = self._scheduler()
        for request in lost:
            if not request.future.done():
                request.future.set_result(_failed(request, error))

    def _record_failure(self, exc: Exception) -> None:
        """Remember a failed step for readiness (see ``LocalBroker.readiness``)."""
        with self._cond:
            self._error = f"{type(exc).__name__}: {exc}"
            self._failed_steps += 1
            self._last_failure = time.monotonic()

    # -- admission --------------------------------------------------------------------------------

    def _retry_after(self, excess: int) -> float:
        """Seconds until ``excess`` waiting trajectories have left, at the recent rate (1 s to 60 s)."""
        rate = self._left_ema / self._step_s_ema if self._step_s_ema > 0 else 0.0
        return 1.0 if rate <= 0 else min(60.0, max(1.0, excess / rate))

    def plan(self, job: Job) -> Plan:
        """The plan ``job`` would run with here (validated against this engine's model and caps)."""
        return plan_job(job, model=self.model_name, task=self.task, defaults=self.defaults, caps=self.caps)

    def _request(self, job: Job, on_event: Callable[[IterationEvent], None] | None) -> Request:
        """Resolve ``job`` into a request (in the caller's thread)."""
        plan = self.plan(job)
        now = self.clock()
        return Request(
            job,
            plan,
            task=self.task,
            arrival=now,
            deadline=deadline(plan, job.submitted_at, time.time(), now),
            on_event=on_event,
        )


def _failed(request: Request, error: str) -> SolveResult:
    """The failed result of a request whose state may be inconsistent (aggregation itself may raise)."""
    try:
        return request.finish(Status.FAILED, error)
    except Exception:
        log.exception("could not aggregate failed request %s", request.id)
        return bare_failure(request.job, error, request.seed)
