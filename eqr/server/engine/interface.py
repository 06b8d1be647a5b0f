"""The engine's public surface besides :class:`~eqr.server.engine.engine.Engine`: its
configuration, its stats, the observer hooks it calls, and the errors ``submit`` raises.

Kept apart from the engine loop so the API layer can read the whole contract in one short file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from eqr.server.jobs import Job, SolveResult


class Overloaded(Exception):
    """No room in the queue for the job's trajectories; retrying after ``retry_after_s`` may succeed."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class EngineStopped(Exception):
    """The engine is draining or stopped and accepts no new work."""


class InvalidParam(ValueError):
    """A job the engine refuses; ``field`` names the offending field (``depth``, ``breadth``, ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class EngineConfig:
    """Capacity, caps and defaults of one engine. ``None`` defaults come from the model.

    ``max_queue`` counts waiting *trajectories*, not requests: a breadth-B request needs B places,
    since the queue bounds work, and work is trajectories.
    """

    slots: int = 64  # slot pool capacity: trajectories advanced per step (the server passes preferred_slots)
    max_queue: int = 1024  # waiting trajectories before submit raises Overloaded
    default_depth: int | None = None  # None: the model's inference depth (config.json), else its training depth
    max_depth: int = 256
    max_breadth: int = 128  # as the server's default (Settings.max_breadth): the paper's protocol runs 128
    max_budget: int = 65_536  # a request's total iterations (trajectories and restarts)
    default_noise: float | None = None  # None: the model's inference noise, else its training noise
    window: int | None = None  # convergence window; None: the model's, else ConvergenceRule's
    tol: float | None = None  # residual tolerance; None: the model's, else ConvergenceRule's
    aging_per_s: float = 1.0  # effective priority gained per second of waiting
    device: str = "cpu"  # where the slot pool lives; the model must already be there
    threads: int | None = None  # torch intra-op threads of the engine thread; None: torch's choice
    fast_step: bool = True  # run EqRNetwork models through eqr.runtime.step.make_step (CUDA graphs / CPU fast step)
    # who holds the slots: "fair" (preemptive, by attained service, shares per client and request) or
    # "fcfs" (first come, a trajectory keeps its slot until it ends); see scheduler.py
    scheduler: str = "fair"
    max_saved_bytes: int = 256 << 20  # host memory for preempted trajectories' state; beyond it new work waits

    def __post_init__(self) -> None:
        for name in ("slots", "max_queue", "max_depth", "max_breadth", "max_budget"):
            if getattr(self, name) < 1:
                raise ValueError(f"EngineConfig.{name} must be >= 1")
        if self.window is not None and self.window < 1:
            raise ValueError("EngineConfig.window must be >= 1")
        if self.aging_per_s < 0:
            raise ValueError("EngineConfig.aging_per_s must be >= 0")
        if self.scheduler not in ("fair", "fcfs"):
            raise ValueError(f"EngineConfig.scheduler must be 'fair' or 'fcfs', got {self.scheduler!r}")
        if self.max_saved_bytes < 0:
            raise ValueError("EngineConfig.max_saved_bytes must be >= 0")


@dataclass(frozen=True)
class EngineStats:
    queue_depth: int  # trajectories waiting for a slot
    queued_requests: int  # requests none of whose trajectories has had a slot yet
    live_slots: int
    capacity: int
    in_flight: int  # accepted requests without a result
    steps: int  # engine steps so far
    last_step_time: float | None  # time.monotonic() at the end of the last step; None before the first
    last_step_duration_s: float
    error: str | None  # the last engine exception ("Type: message"), or None
    draining: bool  # no longer accepting work (drain or stop called)
    # failures since the last step that ran the model successfully (0: healthy), and when the last was
    failed_steps: int = 0
    last_failure_time: float | None = None  # time.monotonic(); None when no step ever failed
    preempted: int = 0  # trajectories waiting preempted, their state saved on the host
    saved_bytes: int = 0  # host memory their state takes


class EngineObserver(Protocol):
    """Metrics hooks, called from the engine thread; they must not block."""

    def on_step(self, duration_s: float, live_slots: int, capacity: int, queue_depth: int) -> None: ...

    def on_evict(self, reason: str, count: int) -> None: ...

    def on_iterations(self, n: int) -> None: ...

    def on_finished(self, result: SolveResult, job: Job) -> None: ...

    def on_preemption(self, preempted: int, resumed: int, saved_bytes: int, max_saved_bytes: int) -> None: ...


class NullObserver:
    """The default observer: observes nothing."""

    def on_step(self, duration_s: float, live_slots: int, capacity: int, queue_depth: int) -> None:
        pass

    def on_evict(self, reason: str, count: int) -> None:
        pass

    def on_iterations(self, n: int) -> None:
        pass

    def on_finished(self, result: SolveResult, job: Job) -> None:
        pass

    def on_preemption(self, preempted: int, resumed: int, saved_bytes: int, max_saved_bytes: int) -> None:
        pass
