"""The Redis broker in-process against a real redis-server: encodings, the scripts, admission per model,
the model list, readiness and recovery. Workers are played by the test (a heartbeat key, a STORE
call), so no model and no subprocess is needed; the end-to-end tests with real workers are in
tests/e2e/test_redis_mode.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest

from eqr.model.tasks.maze import MazeTask
from eqr.model.tasks.sudoku import SudokuTask
from eqr.server.broker.base import (
    InvalidParam,
    JobState,
    ModelCard,
    Overloaded,
    Unavailable,
    UnknownModel,
    WorkerTimeout,
)
from eqr.server.broker.redis import RedisBroker, connect, ensure_group
from eqr.server.broker.redis_protocol import (
    GROUP,
    STORE,
    Delivery,
    Entry,
    Keys,
    RedisOptions,
    decode_cards,
    decode_entry,
    decode_event,
    decode_result,
    encode_cards,
    encode_entry,
    encode_event,
    encode_result,
    failed_result,
)
from eqr.server.jobs import IterationEvent, Job, SolveParams, SolveResult, Status
from tests.live_server import MAZE, MAZE_SIZE
from tests.redis_server import RedisServer

PUZZLE = [int(t) for t in SudokuTask().encode(SudokuTask().example())]
MAZE_TOKENS = [int(t) for t in MazeTask(MAZE_SIZE).encode(MAZE)]
CAPS = {"depth": 50, "breadth": 4, "slots": 8, "queue": 64, "budget": 400}  # as an engine advertises them
CARD = ModelCard(name="fake", task="sudoku", arch={"seq_len": 81}, defaults={"depth": 6}, caps=CAPS)
MAZE_SPEC = {"task": "maze", "grid": {"rows": MAZE_SIZE, "cols": MAZE_SIZE}}
MAZE_CARD = ModelCard(name="maze", task="maze", arch={}, defaults={}, caps=CAPS, task_spec=MAZE_SPEC)


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
    answer = list(range(1, 82))
    return SolveResult(job.id, status, answer, False, [6], None, 1.0, math.inf, 1.0, 2.0, None, 7, job.model, job.form)


async def _announce_worker(
    server: RedisServer, options: RedisOptions, name: str = "w", cards: Sequence[ModelCard] = (CARD,)
) -> None:
    """Play a live worker serving ``cards`` (in that order): the consumer groups of its models' streams
    and the heartbeat an `eqr worker` would write."""
    keys = Keys(options.prefix)
    served = encode_cards({c.name: c for c in cards})
    doc = {"name": name, "cards": served, "slots": 8, "live_slots": 3, "queue_depth": 2, "in_flight": 1}
    client = connect(server.url)
    for card in cards:
        await ensure_group(client, keys.jobs(card.name))
    await client.set(keys.worker(name), json.dumps(doc), px=60_000)
    await client.sadd(keys.workers, name)
    await client.aclose()


async def _until(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def broker(redis_server: RedisServer) -> AsyncIterator[RedisBroker]:
    b = RedisBroker(_options(redis_server, max_jobs=3), default_model="fake")
    await b.start()
    try:
        yield b
    finally:
        await b.close()


def test_encodings_round_trip():
    job = Job(PUZZLE, SolveParams(depth=9, breadth=2, seed=5, timeout_ms=100), model="fake", form="grid")
    d = decode_entry(encode_entry(Delivery(job, "eqr:reply:n", True, False)))
    assert d == Delivery(job, "eqr:reply:n", True, False)
    result = _result(job)
    back, meta = decode_result(encode_result(result, worker="w1", deliveries=2, kept=True))
    assert back == result and math.isinf(back.convergence_score) and (back.model, back.form) == ("fake", "grid")
    assert meta == {"worker": "w1", "deliveries": 2, "kept": True}
    event = IterationEvent(job.id, 3, PUZZLE, 0.5, 2)
    assert decode_event(encode_event(event)[1:]) == event
    failed = failed_result(job, "dead-lettered")
    assert failed.status is Status.FAILED and failed.error == "dead-lettered" and failed.answer == PUZZLE
    assert failed.iterations == [0, 0] and failed.model == "fake" and failed.seed == 5
    # a heartbeat's cards keep the worker's order (its first model first) and the task spec
    cards = decode_cards(json.loads(json.dumps(encode_cards({"maze": MAZE_CARD, "fake": CARD}))))
    assert cards == [MAZE_CARD, CARD] and cards[0].solver_task.seq_len == MAZE_SIZE * MAZE_SIZE


async def test_store_is_idempotent_and_acks(redis_server: RedisServer):
    """The first stored result wins; a redelivery announces the stored one, and the entry is gone."""
    keys, client = Keys("eqr"), connect(redis_server.url)
    stream = keys.jobs("fake")
    store = client.register_script(STORE)
    await ensure_group(client, stream)
    job = Job(PUZZLE, model="fake")
    entry = await client.xadd(stream, encode_entry(Delivery(job, "chan", False, True)))
    await client.xreadgroup(GROUP, "w1", {stream: ">"}, count=1)
    pubsub = client.pubsub()
    await pubsub.subscribe("chan")
    first = encode_result(_result(job), worker="w1", deliveries=1, kept=True)
    second = encode_result(_result(job, Status.CANCELLED), worker="w2", deliveries=2, kept=True)
    args = [keys.result(job.id), keys.kept(job.id), stream]
    assert await store(keys=args, args=[first, 60_000, "chan", GROUP, entry]) == first
    assert await store(keys=args, args=[second, 60_000, "chan", GROUP, entry]) == first
    messages: list[str] = []
    deadline = asyncio.get_running_loop().time() + 5
    while len(messages) < 2 and asyncio.get_running_loop().time() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        if message is not None:  # None: a timeout, or the subscription's own confirmation
            messages.append(message["data"])
    assert messages == ["R" + first, "R" + first]
    assert await client.xlen(stream) == 0 and (await client.xpending(stream, GROUP))["pending"] == 0
    assert 0 < await client.pttl(keys.result(job.id)) <= 60_000
    await pubsub.aclose()
    await client.aclose()


async def test_readiness_validation_and_admission_per_model(broker: RedisBroker, redis_server: RedisServer):
    ready = broker.readiness()
    assert not ready.ready and "no live worker" in ready.reason and broker.cards == {}
    with pytest.raises(Unavailable, match="no live worker"):
        await broker.submit(Job(PUZZLE))
    await _announce_worker(redis_server, broker.options, cards=[CARD, MAZE_CARD])
    await _until(lambda: broker.readiness().ready)
    assert broker.cards == {"fake": CARD, "maze": MAZE_CARD}
    assert broker.stats().capacity == 8 and broker.stats().live_slots == 3
    # checked against the card of the job's own model: its caps, and its task's board and vocabulary
    with pytest.raises(InvalidParam) as err:
        await broker.submit(Job(PUZZLE, SolveParams(depth=51)))
    assert err.value.field == "depth"
    with pytest.raises(InvalidParam) as err:
        await broker.submit(Job(PUZZLE, model="maze"))  # 81 Sudoku tokens are no 5x5 maze
    assert err.value.field == "tokens"
    with pytest.raises(UnknownModel) as unknown:
        await broker.submit(Job(PUZZLE, model="chess"))
    assert unknown.value.served == ["fake", "maze"]
    # no model named: the default, the first card; the entry names it, in that model's own stream
    handles = [await broker.submit(Job(PUZZLE, SolveParams(seed=i)), keep=True) for i in range(3)]
    with pytest.raises(Overloaded, match="model 'fake'"):
        await broker.submit(Job(PUZZLE, model="fake"))
    maze = await broker.submit(Job(MAZE_TOKENS, model="maze"))  # max_jobs bounds each model's stream alone
    r = redis_server.client()
    entries = r.xrange(broker.keys.jobs("fake"))
    assert [decode_entry(fields).job.params.seed for _, fields in entries] == [0, 1, 2]
    assert {decode_entry(fields).job.model for _, fields in entries} == {"fake"}
    [(maze_entry, maze_fields)] = r.xrange(broker.keys.jobs("maze"))
    assert decode_entry(maze_fields).job.tokens == MAZE_TOKENS and maze.entry == Entry("maze", maze_entry)
    assert broker.stats().in_flight == 4
    await _until(lambda: broker.stats().queue_depth == 4 + 2)  # both streams' backlogs, as of the next poll
    found = await broker.get(handles[0].id)
    assert found is handles[0] and found.state is JobState.PENDING


async def test_the_models_are_the_live_workers_models(broker: RedisBroker, redis_server: RedisServer):
    """The live workers' cards, the API node's default first and the rest in name order, whatever the
    workers are called; a model served by several workers has the first one's (in name order) card; a
    heartbeat this version cannot read is skipped, not fatal."""
    other_maze = dataclasses.replace(MAZE_CARD, caps={**CAPS, "depth": 9})  # another worker, another --max-depth
    await _announce_worker(redis_server, broker.options, "a", cards=[MAZE_CARD])
    await _announce_worker(redis_server, broker.options, "b", cards=[other_maze, CARD])
    client = redis_server.client()
    client.set(broker.keys.worker("old"), json.dumps({"name": "old", "card": {"name": "x"}}), px=60_000)
    client.sadd(broker.keys.workers, "old")
    await _until(lambda: len(broker.cards) == 2)
    assert list(broker.cards) == ["fake", "maze"] and broker.cards["maze"] == MAZE_CARD  # worker a's card
    assert broker.live_workers() == {"fake": 1, "maze": 2}
    default = await broker.submit(Job(PUZZLE, SolveParams(depth=5)))  # the node's default, not worker a's first
    assert default.entry is not None and default.entry.model == "fake"
    client.delete(broker.keys.worker("a"))  # a is gone (heartbeat expired): b's card
    await _until(lambda: broker.live_workers() == {"fake": 1, "maze": 1})
    assert broker.cards["maze"] == other_maze
    with pytest.raises(InvalidParam, match="depth"):
        await broker.submit(Job(MAZE_TOKENS, SolveParams(depth=20), model="maze"))
    assert broker.readiness().ready and len(broker._workers) == 1  # "old" counts as no worker


async def test_a_model_whose_workers_are_gone_is_unavailable_then_forgotten(
    broker: RedisBroker, redis_server: RedisServer
):
    """The maze model's only worker dies: the model stays listed with 0 workers and its requests get
    ``model_unavailable`` (503, Retry-After) rather than ``UnknownModel`` (404), on every API node, until
    ``model_memory_s`` has passed since a worker last served it."""
    await _announce_worker(redis_server, broker.options, "sudoku", cards=[CARD])
    await _announce_worker(redis_server, broker.options, "maze", cards=[MAZE_CARD])
    await _until(lambda: broker.live_workers() == {"fake": 1, "maze": 1})
    redis_server.client().delete(broker.keys.worker("maze"))  # its heartbeat expired: it died
    await _until(lambda: broker.live_workers() == {"fake": 1, "maze": 0})
    assert list(broker.cards) == ["fake", "maze"] and broker.readiness().ready
    with pytest.raises(Unavailable, match="model 'maze' has no live worker now") as refused:
        await broker.submit(Job(MAZE_TOKENS, model="maze"))
    assert refused.value.code == "model_unavailable" and refused.value.retry_after_s == broker.options.worker_ttl_s
    # an API node started after the worker died knows the model as well (the record is in Redis) ...
    late = RedisBroker(_options(redis_server, model_memory_s=1.5), default_model="fake")
    await late.start()
    try:
        assert late.live_workers() == {"fake": 1, "maze": 0}
        # ... until the model has gone unserved for model_memory_s: then it is unknown, a 404
        await _until(lambda: list(late.cards) == ["fake"], timeout=5)
        with pytest.raises(UnknownModel, match="'maze' is not served here; this server serves 'fake'"):
            await late.submit(Job(MAZE_TOKENS, model="maze"))
    finally:
        await late.close()


async def test_the_default_model_is_the_api_nodes_setting(broker: RedisBroker, redis_server: RedisServer):
    """Never a worker's: with the default ('fake') unserved, a request naming no model is told so."""
    await _announce_worker(redis_server, broker.options, "a-maze-worker", cards=[MAZE_CARD])
    await _until(lambda: broker.readiness().ready)
    with pytest.raises(Unavailable, match=r"the default model 'fake' has no live worker .*--default-model"):
        await broker.submit(Job(MAZE_TOKENS))
    assert (await broker.submit(Job(MAZE_TOKENS, model="maze"))).entry is not None


async def test_a_synchronous_wait_for_a_model_without_workers_is_bounded(redis_server: RedisServer):
    """A solve whose model loses its last worker fails with WorkerTimeout once the model has gone
    ``unserved_wait_s`` without one, and its job leaves the stream (cancelled, not run for nobody)."""
    b = RedisBroker(_options(redis_server, unserved_wait_s=1.0), default_model="fake")
    await b.start()
    try:
        await _announce_worker(redis_server, b.options, "maze", cards=[MAZE_CARD])
        await _until(lambda: b.live_workers() == {"maze": 1})
        handle = await b.submit(Job(MAZE_TOKENS, model="maze"))
        kept = await b.submit(Job(MAZE_TOKENS, model="maze"), keep=True)
        redis_server.client().delete(b.keys.worker("maze"))
        with pytest.raises(WorkerTimeout, match=f"model 'maze' has had no live worker for 1 s .* job {handle.id} was"):
            await asyncio.wait_for(handle.result(), 5)
        await _until(lambda: redis_server.client().xlen(b.keys.jobs("maze")) == 1)  # only the async job waits on
        assert kept.state is JobState.PENDING
        stored, _ = decode_result(redis_server.client().get(b.keys.result(handle.id)))
        assert stored.status is Status.CANCELLED and stored.iterations == [0]
    finally:
        await b.close()


async def test_cancel_of_a_job_no_live_worker_holds_is_answered_at_once(
    broker: RedisBroker, redis_server: RedisServer
):
    """Queued, or taken by a worker that died: the API node stores the cancelled result itself (any API
    node: the job's marker says where its entry is); one a live worker holds is left to that worker."""
    await _announce_worker(redis_server, broker.options, "w", cards=[CARD])
    await _until(lambda: broker.readiness().ready)
    taken, held, queued = [await broker.submit(Job(PUZZLE, SolveParams(seed=i)), keep=True) for i in range(3)]
    client = redis_server.client()
    stream = broker.keys.jobs("fake")
    client.xreadgroup(GROUP, "dead-worker", {stream: ">"}, count=1)  # taken: by a worker with no heartbeat
    client.xreadgroup(GROUP, "w", {stream: ">"}, count=1)  # held: by the live worker w

    queued.cancel()
    result = await asyncio.wait_for(queued.result(), 2)
    assert result.status is Status.CANCELLED and result.iterations == [0] and result.answer == PUZZLE
    assert client.xlen(stream) == 2 and client.get(broker.keys.kept(queued.id)) is None  # its entry is gone

    other = RedisBroker(broker.options, default_model="fake")  # another API node: it knows the job by id only
    await other.start()
    try:
        found = await other.get(taken.id)
        assert found is not None and found.entry == taken.entry and found is not taken
        found.cancel()
        result = await asyncio.wait_for(found.result(), 2)
        assert result.status is Status.CANCELLED and await asyncio.wait_for(taken.result(), 2) == result
        assert client.xlen(stream) == 1 and client.xpending(stream, GROUP)["pending"] == 1
    finally:
        await other.close()

    held.cancel()  # w is alive: it gets the cancel (key and message) and answers with what it computed
    await _until(lambda: client.exists(broker.keys.cancel(held.id)) == 1)
    await asyncio.sleep(0.3)
    assert held.peek() is None and client.xlen(stream) == 1
    job = decode_entry(client.xrange(stream)[0][1]).job
    envelope = encode_result(_result(job, Status.CANCELLED), worker="w", deliveries=1, kept=True)
    keys = [broker.keys.result(job.id), broker.keys.kept(job.id), stream]
    client.register_script(STORE)(keys=keys, args=[envelope, 60_000, "", GROUP, held.entry.id])
    assert (await asyncio.wait_for(held.result(), 5)).iterations == [6]


async def test_redis_outage_turns_unready_and_lost_jobs_fail(broker: RedisBroker, redis_server: RedisServer):
    """A Redis that restarts *without* its data (no persistence here) lost the queue: callers get an
    error instead of waiting forever, whichever model's stream held their job."""
    await _announce_worker(redis_server, broker.options, cards=[CARD, MAZE_CARD])
    await _until(lambda: broker.readiness().ready)
    handles = [await broker.submit(Job(PUZZLE)), await broker.submit(Job(MAZE_TOKENS, model="maze"))]
    redis_server.kill()
    await _until(lambda: not broker.readiness().ready)
    assert "Redis is unreachable" in broker.readiness().reason
    with pytest.raises(Unavailable, match="Redis is unreachable"):
        await broker.submit(Job(PUZZLE))
    redis_server.start()  # same port, empty
    for handle in handles:
        with pytest.raises(Unavailable, match="lost"):
            await asyncio.wait_for(handle.result(), 5)
    await _announce_worker(redis_server, broker.options)
    await _until(lambda: broker.readiness().ready)
