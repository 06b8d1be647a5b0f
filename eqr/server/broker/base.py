"""The broker interface: how the API hands jobs to an engine without knowing where it runs.

The API talks only to a :class:`Broker`. The in-process :class:`~eqr.server.broker.local.LocalBroker`
wraps an engine thread; the Redis broker puts the same jobs on a stream for worker processes. So
everything here is asyncio-facing, carries only the plain dataclasses of
``eqr.server.jobs``, and raises the broker's own errors (never an engine's).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from eqr.model.tasks.base import Task
from eqr.model.tasks.registry import task_for
from eqr.server.jobs import IterationEvent, Job, SolveResult, Status


class JobState(str, enum.Enum):
    PENDING = "pending"  # accepted, waiting for a slot
    RUNNING = "running"  # at least one trajectory has iterated
    DONE = "done"  # a result exists (any status but cancelled, failed included)
    CANCELLED = "cancelled"  # a result exists and says cancelled: a client polling for an end stops on either


@dataclass(frozen=True)
class ModelCard:
    """What a client may know about a served model: identity, task, shape, defaults and limits.

    ``task_spec`` is the task block of the model folder (``{"task": "maze", "grid": {...}}``), so an API
    node that never loads the model still reads puzzles and shows answers the model's way.
    """

    name: str
    task: str
    arch: dict[str, Any]
    defaults: dict[str, Any]
    caps: dict[str, Any]
    accuracy: dict[str, Any] | None = None
    task_spec: dict[str, Any] = field(default_factory=dict)

    @property
    def solver_task(self) -> Task:
        """The model's task, built once per distinct spec."""
        return _task(json.dumps(self.task_spec or {"task": self.task}, sort_keys=True))


@functools.lru_cache(maxsize=64)
def _task(spec: str) -> Task:
    return task_for(json.loads(spec))


@dataclass(frozen=True)
class BrokerStats:
    queue_depth: int  # queued trajectories
    live_slots: int
    capacity: int
    in_flight: int  # accepted requests without a result yet


@dataclass(frozen=True)
class Readiness:
    """``ready`` or, when not, a machine ``code`` (``not_ready`` / ``draining``) and a human reason."""

    ready: bool
    code: str = "ready"
    reason: str = "ready"


class BrokerError(Exception):
    """Base of the errors a broker raises to the API."""


class Overloaded(BrokerError):
    """No room for the job now; a retry after ``retry_after_s`` seconds may succeed."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(BrokerError):
    """No work can be taken (or finished) now: ``code`` is ``draining`` (shutting down), ``not_ready``, or
    ``model_unavailable`` (Redis mode: the model was served recently, but no live worker serves it now);
    a retry after ``retry_after_s`` seconds may succeed."""

    def __init__(self, message: str, code: str = "not_ready", retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after_s = retry_after_s


class WorkerTimeout(BrokerError):
    """An accepted job waited longer than allowed with no live worker for its model; it was cancelled, so
    a retry runs it once (Redis mode: its only worker died and none came back in time)."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnknownModel(BrokerError):
    """A job for a model no engine here serves; ``served`` lists the ones that are."""

    def __init__(self, name: str, served: list[str]) -> None:
        shown = ", ".join(repr(s) for s in served) or "none yet"
        super().__init__(f"model {name!r} is not served here; this server serves {shown}")
        self.name, self.served = name, served


@dataclass
class InvalidParam(BrokerError):
    """A parameter the engine refuses (e.g. over a cap); ``field`` names it as the client spelled it."""

    message: str
    field: str | None = field(default=None)

    def __str__(self) -> str:
        return self.message


class JobHandle(Protocol):
    """One submitted job, seen from the event loop."""

    @property
    def id(self) -> str: ...

    @property
    def state(self) -> JobState: ...

    def peek(self) -> SolveResult | None:
        """The result if it already exists, without waiting."""
        ...

    async def result(self) -> SolveResult:
        """Wait for the result (raises :class:`Unavailable` if the engine stopped without one)."""
        ...

    def events(self) -> AsyncIterator[IterationEvent]:
        """Iteration events in order, ending when the result exists (only for ``stream=True`` jobs)."""
        ...

    def cancel(self) -> None:
        """Ask for cancellation; never blocks, so it is safe in ``finally`` blocks of cancelled tasks."""
        ...


class Broker(Protocol):
    """Accepts jobs, tracks them to a result, keeps async jobs' results for a TTL.

    ``cards``: the models a client may name, the default (a job naming none) first when it is among
    them: the served ones and, in Redis mode, those served recently whose workers are all gone
    (:meth:`live_workers` tells them apart). A job reaches an engine serving its ``model``.
    """

    cards: dict[str, ModelCard]
    default_model: str  # the model of a request naming none (the API node's setting, else its rule)

    def card(self, name: str | None) -> ModelCard:
        """The card of model ``name`` (None: the default), if it can take work now.

        Raises :class:`UnknownModel` for a model that is not known here, and :class:`Unavailable`
        (``model_unavailable``) for one that is known but has no live engine now.
        """
        ...

    def live_workers(self) -> dict[str, int]:
        """For each card, the processes serving it now: Redis-mode workers (0: none live), 1 when embedded."""
        ...

    async def start(self) -> None: ...

    async def submit(self, job: Job, *, stream: bool = False, keep: bool = False) -> JobHandle:
        """Queue ``job``. ``stream``: deliver iteration events; ``keep``: retrievable by id until the TTL.

        Raises :class:`Overloaded`, :class:`Unavailable` or :class:`InvalidParam`.
        """
        ...

    async def get(self, job_id: str) -> JobHandle | None:
        """A kept job by id, or ``None`` when unknown or expired."""
        ...

    async def drain(self, timeout_s: float) -> bool:
        """Stop admitting work and wait for running work; True when everything finished in time."""
        ...

    async def close(self) -> None:
        """Stop the engine; anything still running ends (cancelled)."""
        ...

    def stats(self) -> BrokerStats: ...

    def readiness(self) -> Readiness: ...


END_OF_EVENTS = object()  # closes a job's event queue


class FutureJob:
    """What every job handle shares: a result future, an optional event queue and a started flag.

    Brokers differ only in how results and events arrive and how a cancel travels; the
    state, ``peek`` and event iteration are the same everywhere, so they live here.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, stream: bool) -> None:
        self._result: asyncio.Future[SolveResult] = loop.create_future()
        self._events: asyncio.Queue[object] | None = asyncio.Queue() if stream else None
        self._started = False  # the first iteration event arrived (a plain bool write is atomic)

    @property
    def state(self) -> JobState:
        if self._result.done():
            result = self.peek()
            return JobState.CANCELLED if result is not None and result.status is Status.CANCELLED else JobState.DONE
        return JobState.RUNNING if self._started else JobState.PENDING

    def mark_started(self) -> None:
        """Its work is known to be running (a first iteration event, or a worker's word in Redis)."""
        self._started = True

    def peek(self) -> SolveResult | None:
        done = self._result.done() and not self._result.cancelled() and self._result.exception() is None
        return self._result.result() if done else None

    async def events(self) -> AsyncIterator[IterationEvent]:
        if self._events is None:
            raise RuntimeError(f"job {self.id} was not submitted with stream=True")  # type: ignore[attr-defined]
        while (item := await self._events.get()) is not END_OF_EVENTS:
            yield item  # type: ignore[misc]
