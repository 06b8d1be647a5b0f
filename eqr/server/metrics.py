"""Prometheus metrics of one server: the engine's observer plus the API's rejection counter.

Each app owns a :class:`Metrics` with its own ``CollectorRegistry``, so two apps in one process (the
tests build many) never share or collide on series. Every metric is documented in docs/metrics.md;
names use the ``eqr_`` prefix and base units (seconds, counts).

Every engine series carries a ``model`` label (and the request histograms a ``task`` label): a server
serving several models runs one engine per model, and :meth:`Metrics.observer` gives each engine an
observer bound to its model. Engines call the ``on_*`` methods from their own threads;
prometheus-client is thread-safe, and nothing here blocks, so observing costs the step loop a few
dictionary look-ups.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from eqr.server.engine.interface import EngineObserver
from eqr.server.jobs import Job, SolveResult

# Integer iteration counts; the buckets stop at the server's depth cap, which is then the last bucket.
ITERATION_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
STEP_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
# the ``work`` label of the per-work latency histograms: slot-iterations a request spent, up to each bound
WORK_BOUNDS = (16, 64, 256, 1024, 4096)


def work_label(result: SolveResult) -> str:
    """The work bucket of a finished request: the smallest bound at or above its slot-iterations spent."""
    spent = sum(result.iterations)
    return next((f"le{b}" for b in WORK_BOUNDS if spent <= b), f"gt{WORK_BOUNDS[-1]}")


def iteration_buckets(max_depth: int) -> tuple[float, ...]:
    """The standard integer buckets below the depth cap, then the cap itself (``+Inf`` is implicit)."""
    below = [b for b in ITERATION_BUCKETS if b < max_depth]
    return tuple(float(b) for b in [*below, max_depth])


def iterations_of(result: SolveResult) -> int:
    """The per-request value of the iterations histogram.

    The chosen trajectory's iterations to convergence; a request that never converged (budget,
    deadline, cancel, failure) counts the most iterations any of its trajectories ran, so every
    finished request lands in the histogram and its ``status`` label tells the cases apart.
    """
    if result.iterations_to_convergence is not None:
        return result.iterations_to_convergence
    return max(result.iterations, default=0)


class Metrics:
    """All series of one server, registered in a private registry."""

    def __init__(self, max_depth: int) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.iterations_to_convergence = Histogram(
            "eqr_iterations_to_convergence",
            "Iterations until a request's answer converged (iterations run when it did not), per finished request",
            ["task", "model", "status"],
            buckets=iteration_buckets(max_depth),
            registry=r,
        )
        self.request_duration = Histogram(
            "eqr_request_duration_seconds",
            "Time from submission to result of finished requests (queue wait + compute)",
            ["task", "model", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "eqr_queue_wait_seconds",
            "Time a finished request waited before its first trajectory got a slot",
            ["task", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.duration_by_work = Histogram(
            "eqr_request_duration_by_work_seconds",
            "Time from submission to result, by the slot-iterations the request spent (work: le16 ... gt4096)",
            ["model", "work"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait_by_work = Histogram(
            "eqr_queue_wait_by_work_seconds",
            "Time before a request's first trajectory got a slot, by the slot-iterations it spent",
            ["model", "work"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.preemptions = Counter(
            "eqr_preemptions", "Trajectories that left their slot with their state saved (fair scheduler)", ["model"],
            registry=r,
        )  # fmt: skip
        self.resumes = Counter(
            "eqr_resumes", "Preempted trajectories that got a slot back, their state restored", ["model"], registry=r
        )
        self.saved_state = Gauge(
            "eqr_saved_state_bytes", "Host memory held by preempted trajectories' state", ["model"], registry=r
        )
        self.saved_state_limit = Gauge(
            "eqr_saved_state_limit_bytes", "Bound on eqr_saved_state_bytes (EQR_MAX_SAVED_STATE_BYTES)", ["model"],
            registry=r,
        )  # fmt: skip
        self.slot_busy = Counter(
            "eqr_slot_busy_seconds", "Slot-seconds a slot held a trajectory (utilisation: its rate over "
            "eqr_slot_seconds')", ["model"], registry=r,
        )  # fmt: skip
        self.slot_time = Counter(
            "eqr_slot_seconds", "Slot-seconds of engine steps (step time x slots)", ["model"], registry=r
        )
        self.step_duration = Histogram(
            "eqr_step_duration_seconds", "Wall time of one engine step", ["model"], buckets=STEP_BUCKETS, registry=r
        )
        self.queue_depth = Gauge("eqr_queue_depth", "Trajectories waiting for a slot", ["model"], registry=r)
        self.live_slots = Gauge(
            "eqr_live_slots", "Slots holding a live trajectory after the last step", ["model"], registry=r
        )
        self.slot_capacity = Gauge("eqr_slot_capacity", "Size of the slot pool", ["model"], registry=r)
        self.requests_in_flight = Gauge(
            "eqr_requests_in_flight", "Accepted requests without a result yet (queued or running)", registry=r
        )
        self.requests = Counter("eqr_requests", "Finished requests by result status", ["model", "status"], registry=r)
        self.evicted = Counter(
            "eqr_trajectories_evicted", "Trajectories that left a slot, by reason", ["model", "reason"], registry=r
        )
        self.iterations = Counter(
            "eqr_iterations", "Trajectory iterations run (one slot, one step)", ["model"], registry=r
        )
        self.restarts = Counter(
            "eqr_restarts", "Verified mode: fresh trajectories started after a failed answer", ["model"], registry=r
        )
        self.verified = Counter(
            "eqr_verified_answers", "Verified mode: finished requests whose answer passed the task's rules",
            ["model"], registry=r,
        )  # fmt: skip
        self.rejections = Counter(
            "eqr_rejections", "Requests refused before any work was queued, by error code", ["reason"], registry=r
        )

    def observer(self, model: str, task: str, capacity: int, max_saved_bytes: int = 0) -> EngineObserver:
        """The observer of the engine serving ``model``; publishes its pool size and saved-state bound before
        the first step, and its preemption series at zero (a dashboard shows 0, not "no data")."""
        self.slot_capacity.labels(model).set(capacity)
        self.saved_state_limit.labels(model).set(max_saved_bytes)
        self.saved_state.labels(model).set(0)
        for series in (self.preemptions, self.resumes, self.slot_busy, self.slot_time):
            series.labels(model)
        return ModelObserver(self, model, task)

    # -- API side ------------------------------------------------------------------------------------

    def reject(self, reason: str) -> None:
        self.rejections.labels(reason).inc()

    def track(self, in_flight: Callable[[], float]) -> None:
        """Read in-flight requests at scrape time."""
        self.requests_in_flight.set_function(in_flight)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type, for ``GET /metrics``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class ModelObserver:
    """One engine's observer: the server's series, labelled with the engine's model (called from its thread)."""

    def __init__(self, metrics: Metrics, model: str, task: str) -> None:
        self.m, self.model, self.task = metrics, model, task

    def on_step(self, duration_s: float, live_slots: int, capacity: int, queue_depth: int) -> None:
        m = self.m
        m.step_duration.labels(self.model).observe(duration_s)
        m.live_slots.labels(self.model).set(live_slots)
        m.slot_capacity.labels(self.model).set(capacity)
        m.queue_depth.labels(self.model).set(queue_depth)
        m.slot_busy.labels(self.model).inc(duration_s * live_slots)
        m.slot_time.labels(self.model).inc(duration_s * capacity)

    def on_evict(self, reason: str, count: int) -> None:
        if count:
            self.m.evicted.labels(self.model, reason).inc(count)

    def on_iterations(self, n: int) -> None:
        if n:
            self.m.iterations.labels(self.model).inc(n)

    def on_finished(self, result: SolveResult, job: Job) -> None:
        m, labels = self.m, (self.task, self.model)
        status = getattr(result.status, "value", str(result.status))
        m.iterations_to_convergence.labels(*labels, status).observe(iterations_of(result))
        total_s = (result.queued_ms + result.compute_ms) / 1000.0
        if math.isfinite(total_s):
            m.request_duration.labels(*labels, status).observe(total_s)
            m.queue_wait.labels(*labels).observe(result.queued_ms / 1000.0)
            work = work_label(result)
            m.duration_by_work.labels(self.model, work).observe(total_s)
            m.queue_wait_by_work.labels(self.model, work).observe(result.queued_ms / 1000.0)
        m.requests.labels(self.model, status).inc()
        if result.restarts:
            m.restarts.labels(self.model).inc(result.restarts)
        if result.verified:
            m.verified.labels(self.model).inc()

    def on_preemption(self, preempted: int, resumed: int, saved_bytes: int, max_saved_bytes: int) -> None:
        m = self.m
        if preempted:
            m.preemptions.labels(self.model).inc(preempted)
        if resumed:
            m.resumes.labels(self.model).inc(resumed)
        m.saved_state.labels(self.model).set(saved_bytes)
        m.saved_state_limit.labels(self.model).set(max_saved_bytes)
