"""What the API process and the workers agree on in Redis: names, encodings, and the atomic scripts.

Both sides import this module and nothing of each other, so the wire format lives in one place.
The layout (``P`` is the prefix, ``eqr`` by default):

============================  =============  ========================================================
key                           type           meaning
============================  =============  ========================================================
``P:jobs:{model}``            stream         one per served model: its unfinished jobs; consumer group
                                             ``workers``; an entry is deleted when its result is
                                             stored, so XLEN = the model's unfinished jobs
``P:dead``                    stream         dead letters of every model: the entry's fields plus
                                             ``model``, ``entry_id``, ``deliveries``, ``reason``, ``worker``
``P:result:{id}``             string, TTL    the result envelope; first writer wins (``SET NX``)
``P:kept:{id}``               string, TTL    an async job's marker until the result: its state
                                             (``pending``/``running``), its entry, the worker running it
``P:cancel:{id}``             string, TTL    a cancellation, for workers that pick the job up later
``P:worker:{name}``           string, TTL    a worker's heartbeat: the cards of every model it serves,
                                             in its order, and its load
``P:workers``                 set            names of workers that sent a heartbeat (pruned by the API)
``P:models``                  hash           model → its card and when a live worker last served it,
                                             written by the API nodes; forgotten after ``model_memory_s``
``P:reply:{node}``            channel        one per API process: ``E``+event and ``R``+result messages
``P:cancel``                  channel        job ids to cancel, heard by every worker
============================  =============  ========================================================

Why a stream per model: a worker reads only the streams of the models it loaded (one
``XREADGROUP`` over all of them), so a job can only reach a worker that can run it, and a flood of
one model's jobs never sits in front of another model's. Job, result and cancel keys are per job id,
which is unique across models, so they need no model in their name.

The scripts make the two transitions that must not be torn apart atomic: admission (check the bound,
append, mark an async job) and completion (store the result once, announce it, ack and delete the
entry), plus the lease renewal a worker sends for the entries it is computing.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from eqr.server.broker.base import ModelCard
from eqr.server.jobs import IterationEvent, Job, SolveParams, SolveResult, Status, bare_failure

GROUP = "workers"
EVENT, RESULT = "E", "R"  # first character of a reply-channel message


class RedisOptions(BaseSettings):
    """The distributed mode's knobs; each is also the env var ``EQR_REDIS_<FIELD>``.

    ``claim_idle_s`` is compared with the idle time of a pending entry, which its owner resets every
    ``heartbeat_s`` (a lease), so it only has to exceed a few heartbeats, not the longest solve.

    ``max_jobs`` bounds each model's stream on its own (Redis memory is then at most models x
    ``max_jobs`` entries): a model whose workers fell behind answers 429 while the others keep
    admitting work.
    """

    model_config = SettingsConfigDict(env_prefix="EQR_REDIS_", extra="ignore")

    url: str = Field("redis://127.0.0.1:6379/0", description="redis:// URL of the shared Redis")
    prefix: str = Field("eqr", min_length=1, description="namespace of every key and channel")
    max_jobs: int = Field(
        10_000, ge=1, description="unfinished jobs of one model (its stream) before new work for it gets 429"
    )
    heartbeat_s: float = Field(2.0, gt=0, description="worker heartbeat and lease renewal period")
    claim_idle_s: float = Field(15.0, gt=0, description="a pending job idle this long belongs to a dead worker")
    max_deliveries: int = Field(3, ge=1, description="deliveries of one job before it is dead-lettered")
    dead_maxlen: int = Field(10_000, ge=1, description="dead letters kept (oldest trimmed)")
    model_memory_s: float = Field(
        3600.0,
        gt=0,
        description="how long a model whose last worker left stays known: its requests get 503 model_unavailable "
        "(with Retry-After) meanwhile, 404 model_not_found after",
    )
    unserved_wait_s: float = Field(
        30.0,
        gt=0,
        description="how long a synchronous request (solve, batch, stream) waits while its model has no live "
        "worker before it gets 504 worker_timeout and its job is cancelled",
    )

    @model_validator(mode="after")
    def _lease_outlives_heartbeats(self) -> RedisOptions:
        if self.claim_idle_s < 2 * self.heartbeat_s:
            raise ValueError("claim_idle_s must be at least two heartbeats, or live workers lose their jobs")
        return self

    @property
    def worker_ttl_s(self) -> float:
        """A worker missing three heartbeats in a row counts as gone."""
        return 3 * self.heartbeat_s


@dataclass(frozen=True)
class Entry:
    """Where a job waits: an entry of one model's jobs stream. Entry ids are unique only within a
    stream (two streams can hand out the same time-based id), so an entry is named by both."""

    model: str
    id: str


@dataclass(frozen=True)
class Marker:
    """An async job's kept key: ``pending`` (written at admission) or ``running`` (by the worker computing
    it, which names itself), and its entry: what an API node needs to cancel it without a worker."""

    state: str
    entry: Entry | None = None
    worker: str = ""


def encode_marker(state: str, entry: Entry, worker: str = "") -> str:
    return json.dumps({"state": state, "model": entry.model, "entry": entry.id, "worker": worker})


def decode_marker(value: str) -> Marker:
    """The marker; one that is no JSON object (a bare state) has no entry."""
    try:
        doc = json.loads(value)
        return Marker(str(doc["state"]), Entry(str(doc["model"]), str(doc["entry"])), str(doc.get("worker", "")))
    except (ValueError, KeyError, TypeError):
        return Marker(value)


@dataclass(frozen=True)
class Keys:
    prefix: str

    def jobs(self, model: str) -> str:
        """The jobs stream of one served model."""
        return f"{self.prefix}:jobs:{model}"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:dead"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def models(self) -> str:
        return f"{self.prefix}:models"

    @property
    def cancel_channel(self) -> str:
        return f"{self.prefix}:cancel"

    def result(self, job_id: str) -> str:
        return f"{self.prefix}:result:{job_id}"

    def kept(self, job_id: str) -> str:
        return f"{self.prefix}:kept:{job_id}"

    def cancel(self, job_id: str) -> str:
        return f"{self.prefix}:cancel:{job_id}"

    def worker(self, name: str) -> str:
        return f"{self.prefix}:worker:{name}"

    def reply(self, node: str) -> str:
        return f"{self.prefix}:reply:{node}"


# -- scripts ---------------------------------------------------------------------------------------

# KEYS: stream, kept key. ARGV: max_jobs, kept ttl ms (0: not kept), model, then the entry's field/value
# pairs. The bound is checked and the entry appended in one step, so concurrent API nodes can never
# overfill the model's stream; MAXLEN is then a belt-and-braces cap that trims nothing. An async job's
# marker (see :class:`Marker`) records where its entry is, so any API node can cancel it.
ENQUEUE = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', unpack(ARGV, 4))
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[2], cjson.encode({state='pending', model=ARGV[3], entry=id}), 'PX', ARGV[2])
end
return id
"""

# KEYS: result key, kept key, stream. ARGV: envelope, ttl ms, reply channel ('' none), group, entry id.
# The first stored result wins; a later delivery of the same job announces the stored one instead of
# its own, so a caller can only ever hear one answer. Acking in the same step means a job whose result
# exists is never pending, hence never redelivered.
STORE = """
local stored = ARGV[1]
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  stored = redis.call('GET', KEYS[1])
end
redis.call('DEL', KEYS[2])
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], 'R' .. stored) end
redis.call('XACK', KEYS[3], ARGV[4], ARGV[5])
redis.call('XDEL', KEYS[3], ARGV[5])
return stored
"""

# KEYS: stream. ARGV: group, consumer, entry ids. Resets the idle time of the entries this consumer
# still owns (JUSTID: the delivery count stays), and returns the ids it no longer owns: another worker
# claimed them, or they were completed elsewhere. Their local copies are redundant.
RENEW = """
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
"""


# -- encodings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """A job as it travels in a stream entry, with how its answer must be delivered."""

    job: Job
    reply: str  # the submitting API node's reply channel ('' when nobody listens)
    stream: bool  # publish iteration events
    keep: bool  # an async job: readable by id from any API node


def encode_entry(d: Delivery) -> dict[str, str]:
    job = {**dataclasses.asdict(d.job), "params": dataclasses.asdict(d.job.params)}
    return {
        "job": json.dumps(job),
        "reply": d.reply,
        "stream": "1" if d.stream else "0",
        "keep": "1" if d.keep else "0",
    }


def decode_entry(fields: dict[str, str]) -> Delivery:
    """Raises ``ValueError`` (or ``KeyError``/``TypeError``) on an entry this version cannot read."""
    raw = json.loads(fields["job"])
    params = SolveParams(**raw.pop("params"))
    return Delivery(
        Job(params=params, **raw), fields.get("reply", ""), fields.get("stream") == "1", fields.get("keep") == "1"
    )


def entry_job_id(fields: dict[str, str]) -> str | None:
    """The job id of a possibly malformed entry, so even an unreadable job can be failed, not dropped."""
    try:
        value = json.loads(fields["job"]).get("id")
    except (KeyError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def encode_result(result: SolveResult, *, worker: str, deliveries: int, kept: bool) -> str:
    """The stored envelope: the result plus who computed it, at which delivery, and whether it is kept."""
    body = {**dataclasses.asdict(result), "status": result.status.value}
    return json.dumps({"result": body, "worker": worker, "deliveries": deliveries, "kept": kept})


def decode_result(envelope: str) -> tuple[SolveResult, dict[str, Any]]:
    """The result and the rest of the envelope (``worker``, ``deliveries``, ``kept``)."""
    doc = json.loads(envelope)
    body = doc.pop("result")
    body["status"] = Status(body["status"])
    return SolveResult(**body), doc


def encode_event(event: IterationEvent) -> str:
    return EVENT + json.dumps(dataclasses.asdict(event))


def decode_event(text: str) -> IterationEvent:
    return IterationEvent(**json.loads(text))


def encode_cards(cards: dict[str, ModelCard]) -> list[dict[str, Any]]:
    """A worker's cards for its heartbeat, as a list: the order (its first model first) survives JSON."""
    return [dataclasses.asdict(card) for card in cards.values()]


def decode_cards(docs: list[dict[str, Any]]) -> list[ModelCard]:
    """Raises ``TypeError`` (or ``KeyError``/``ValueError``) on a heartbeat this version cannot read."""
    return [ModelCard(**doc) for doc in docs]


def failed_result(job: Job, message: str) -> SolveResult:
    """The ``failed`` result of a job no engine ran (refused or dead-lettered): its givens, no iterations,
    as an engine-made failure of a request that never ran looks; a job too broken for that gets no answer."""
    seed = job.params.seed if isinstance(job.params.seed, int) else None
    return bare_failure(job, message, seed)
