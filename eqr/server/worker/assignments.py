"""What a worker holds (the stream entries it owns, against each model's room) and what its parts share."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import cached_property

from redis.asyncio import Redis

from eqr.server.broker.base import JobState
from eqr.server.broker.local import LocalBroker, LocalJob
from eqr.server.broker.redis import ensure_group
from eqr.server.broker.redis_health import RedisHealth, after_error
from eqr.server.broker.redis_protocol import Delivery, Entry, Keys, RedisOptions
from eqr.server.jobs import Job


@dataclass(eq=False)
class Assignment:
    """A stream entry this worker owns: its job, its handle in the local engine, and its fate."""

    entry: Entry
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
        return self.job.params.with_preset().breadth or 1  # unset: one (the model folder cannot change it)

    @property
    def started(self) -> bool:
        return self.handle is not None and self.handle.state is JobState.RUNNING


class Assignments:
    """The entries held, by entry and by job id, against a capacity in trajectories per model.

    A model's capacity is the worker's admission limit for its stream: that model's engine's slots
    plus ``prefetch``. It takes no more from the shared stream than it can start soon, so the rest
    stays claimable by other workers; and each model has its own, as each has its own engine, so a
    backlog of one model never keeps the worker from taking another's jobs.
    """

    def __init__(self, capacity: dict[str, int]) -> None:
        self.capacity = capacity
        self._by_entry: dict[Entry, Assignment] = {}
        self._by_job: dict[str, Assignment] = {}
        self.room_freed = asyncio.Event()

    def __contains__(self, entry: Entry) -> bool:
        return entry in self._by_entry

    def __len__(self) -> int:
        return len(self._by_entry)

    def all(self) -> list[Assignment]:
        return list(self._by_entry.values())

    def entry(self, entry: Entry) -> Assignment | None:
        return self._by_entry.get(entry)

    def job(self, job_id: str) -> Assignment | None:
        return self._by_job.get(job_id)

    def add(self, a: Assignment) -> None:
        self._by_entry[a.entry] = a
        self._by_job[a.job.id] = a

    def room(self, model: str) -> int:
        """Trajectories of ``model`` this worker may still take: its capacity minus what it is computing."""
        busy = sum(a.trajectories for a in self._by_entry.values() if a.computing and a.entry.model == model)
        return self.capacity[model] - busy

    def forget(self, entry: Entry) -> None:
        """The entry is settled (stored, or another worker's now): drop it and wake the intake."""
        a = self._by_entry.pop(entry, None)
        if a is not None and self._by_job.get(a.job.id) is a:
            del self._by_job[a.job.id]
        self.room_freed.set()


@dataclass(frozen=True)
class WorkerContext:
    """What the worker's parts (intake, lease, outbox) share: its engine, its Redis, its holdings."""

    name: str  # the consumer name in the group, unique per worker
    local: LocalBroker
    client: Redis
    options: RedisOptions
    held: Assignments
    health: RedisHealth

    @cached_property
    def keys(self) -> Keys:
        return Keys(self.options.prefix)

    @cached_property
    def streams(self) -> dict[str, str]:
        """The jobs stream of each model it serves, by stream key: the streams it reads, in its models' order."""
        return {self.keys.jobs(model): model for model in self.local.cards}

    async def ensure_groups(self) -> None:
        """The consumer group of every stream it reads (a fresh Redis, or one that came back empty, has none)."""
        for stream in self.streams:
            await ensure_group(self.client, stream)

    async def after_error(self, exc: BaseException) -> None:
        """A failed Redis call in one of the parts' loops: recreate the groups or mark Redis down and pause."""
        pause_s = min(1.0, self.options.heartbeat_s)
        await after_error(self.health, exc, self.ensure_groups, pause_s)
