"""The Redis broker in-process against a real redis-server: encodings, the scripts, admission,
readiness and recovery. Workers are played by the test (a heartbeat key, a STORE call), so no model
and no subprocess is needed; the end-to-end tests with real workers are in tests/e2e/test_redis_mode.py.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from eqr.model.tasks.sudoku import parse_puzzle
from eqr.server.broker.base import InvalidParam, JobState, ModelCard, Overloaded, Unavailable
from eqr.server.broker.redis import RedisBroker, connect, ensure_group
from eqr.server.broker.redis_protocol import (
    GROUP,
    STORE,
    Delivery,
    Keys,
    RedisOptions,
    decode_entry,
    decode_event,
    decode_result,
    encode_card,
    encode_entry,
    encode_event,
    encode_result,
    failed_result,
)
from eqr.server.jobs import IterationEvent, Job, SolveParams, SolveResult, Status
from tests.redis_server import RedisServer

PUZZLE = parse_puzzle("..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3..")
CAPS = {"depth": 50, "breadth": 4, "slots": 8}
CARD = ModelCard(name="fake", task="sudoku", arch={"seq_len": 81}, defaults={"depth": 6}, caps=CAPS)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.kill()


def _options(server: RedisServer, **overrides: object) -> RedisOptions:
    return RedisOptions(url=server.url, heartbeat_s=0.2, claim_idle_s=1.0, **overrides)


def _result(job: Job, status: Status = Status.MAX_ITERATIONS) -> SolveResult:
    return SolveResult(job.id, status, list(range(81)), False, [6], None, 1.0, math.inf, 1.0, 2.0, None, 7)


async def _announce_worker(server: RedisServer, options: RedisOptions) -> None:
    """Play a live worker: the heartbeat an `eqr worker` would write."""
    keys = Keys(options.prefix)
    doc = {"name": "w", "card": encode_card(CARD), "slots": 8, "live_slots": 3, "queue_depth": 2, "in_flight": 1}
    client = server.client()
    client.set(keys.worker("w"), json.dumps(doc), px=60_000)
    client.sadd(keys.workers, "w")


async def _until(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def broker(redis_server: RedisServer) -> AsyncIterator[RedisBroker]:
    b = RedisBroker(_options(redis_server, max_jobs=3))
    await b.start()
    try:
        yield b
    finally:
        await b.close()


def test_encodings_round_trip():
    job = Job(PUZZLE, SolveParams(depth=9, breadth=2, seed=5, timeout_ms=100), task="sudoku")
    d = decode_entry(encode_entry(Delivery(job, "eqr:reply:n", True, False)))
    assert d == Delivery(job, "eqr:reply:n", True, False)
    result = _result(job)
    back, meta = decode_result(encode_result(result, worker="w1", deliveries=2, kept=True))
    assert back == result and math.isinf(back.convergence_score)
    assert meta == {"worker": "w1", "deliveries": 2, "kept": True}
    event = IterationEvent(job.id, 3, PUZZLE, 0.5, 2)
    assert decode_event(encode_event(event)[1:]) == event
    failed = failed_result(job, "dead-lettered")
    assert failed.status is Status.FAILED and failed.error == "dead-lettered" and failed.answer == PUZZLE
    assert failed.iterations == [0, 0]


async def test_store_is_idempotent_and_acks(redis_server: RedisServer):
    """The first stored result wins; a redelivery announces the stored one, and the entry is gone."""
    keys, client = Keys("eqr"), connect(redis_server.url)
    store = client.register_script(STORE)
    await ensure_group(client, keys)
    job = Job(PUZZLE)
    entry = await client.xadd(keys.jobs, encode_entry(Delivery(job, "chan", False, True)))
    await client.xreadgroup(GROUP, "w1", {keys.jobs: ">"}, count=1)
    pubsub = client.pubsub()
    await pubsub.subscribe("chan")
    first = encode_result(_result(job), worker="w1", deliveries=1, kept=True)
    second = encode_result(_result(job, Status.CANCELLED), worker="w2", deliveries=2, kept=True)
    args = [keys.result(job.id), keys.kept(job.id), keys.jobs]
    assert await store(keys=args, args=[first, 60_000, "chan", GROUP, entry]) == first
    assert await store(keys=args, args=[second, 60_000, "chan", GROUP, entry]) == first
    messages: list[str] = []
    deadline = asyncio.get_running_loop().time() + 5
    while len(messages) < 2 and asyncio.get_running_loop().time() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        if message is not None:  # None: a timeout, or the subscription's own confirmation
            messages.append(message["data"])
    assert messages == ["R" + first, "R" + first]
    assert await client.xlen(keys.jobs) == 0 and (await client.xpending(keys.jobs, GROUP))["pending"] == 0
    assert 0 < await client.pttl(keys.result(job.id)) <= 60_000
    await pubsub.aclose()
    await client.aclose()


async def test_readiness_validation_and_bounded_admission(broker: RedisBroker, redis_server: RedisServer):
    ready = broker.readiness()
    assert not ready.ready and "no live worker" in ready.reason
    with pytest.raises(Unavailable, match="no live worker"):
        await broker.submit(Job(PUZZLE))
    await _announce_worker(redis_server, broker.options)
    await _until(lambda: broker.readiness().ready)
    assert broker.card == CARD
    assert broker.stats().capacity == 8 and broker.stats().live_slots == 3
    with pytest.raises(InvalidParam) as err:
        await broker.submit(Job(PUZZLE, SolveParams(depth=51)))
    assert err.value.field == "depth"
    handles = [await broker.submit(Job(PUZZLE, SolveParams(seed=i)), keep=True) for i in range(3)]
    with pytest.raises(Overloaded):
        await broker.submit(Job(PUZZLE))
    entries = redis_server.client().xrange(broker.keys.jobs)
    assert [decode_entry(fields).job.params.seed for _, fields in entries] == [0, 1, 2]
    assert broker.stats().in_flight == 3
    await _until(lambda: broker.stats().queue_depth == 3 + 2)  # the backlog, as of the next poll
    found = await broker.get(handles[0].id)
    assert found is handles[0] and found.state is JobState.PENDING


async def test_result_reaches_the_caller_and_kept_jobs_by_id(broker: RedisBroker, redis_server: RedisServer):
    await _announce_worker(redis_server, broker.options)
    await _until(lambda: broker.readiness().ready)
    job = Job(PUZZLE, SolveParams(seed=1))
    handle = await broker.submit(job, stream=True, keep=True)
    client = redis_server.client()
    # play the worker: read the entry, publish an event, store the result
    [[_, [(entry, fields)]]] = client.xreadgroup(GROUP, "w", {broker.keys.jobs: ">"}, count=1)
    delivery = decode_entry(fields)
    client.publish(delivery.reply, encode_event(IterationEvent(job.id, 1, PUZZLE, 0.5, 1)))
    envelope = encode_result(_result(job), worker="w", deliveries=1, kept=True)
    keys = [broker.keys.result(job.id), broker.keys.kept(job.id), broker.keys.jobs]
    client.register_script(STORE)(keys=keys, args=[envelope, 60_000, delivery.reply, GROUP, entry])
    events = [e async for e in handle.events()]
    assert [e.iteration for e in events] == [1]
    assert await asyncio.wait_for(handle.result(), 5) == _result(job)
    assert broker.stats().in_flight == 0
    # another API node (a fresh broker) finds the kept job by id, with its result
    other = RedisBroker(broker.options)
    await other.start()
    try:
        found = await other.get(job.id)
        assert found is not None and found.state is JobState.DONE and found.peek() == _result(job)
        assert await other.get("no-such-job") is None
    finally:
        await other.close()


async def test_redis_outage_turns_unready_and_lost_jobs_fail(broker: RedisBroker, redis_server: RedisServer):
    """A Redis that restarts *without* its data (no persistence here) lost the queue: callers get an
    error instead of waiting forever."""
    await _announce_worker(redis_server, broker.options)
    await _until(lambda: broker.readiness().ready)
    handle = await broker.submit(Job(PUZZLE))
    redis_server.kill()
    await _until(lambda: not broker.readiness().ready)
    assert "Redis is unreachable" in broker.readiness().reason
    with pytest.raises(Unavailable, match="Redis is unreachable"):
        await broker.submit(Job(PUZZLE))
    redis_server.start()  # same port, empty
    with pytest.raises(Unavailable, match="lost"):
        await asyncio.wait_for(handle.result(), 5)
    await _announce_worker(redis_server, broker.options)
    await _until(lambda: broker.readiness().ready)
