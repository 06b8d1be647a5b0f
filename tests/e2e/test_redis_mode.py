"""The distributed mode end to end: a real redis-server, ``eqr api`` and two ``eqr worker`` processes.

One cluster for the module (process start-up costs seconds). Redis runs with ``appendonly yes`` and
``appendfsync always``: an accepted job is one whose ``ENQUEUE`` Redis acknowledged, and with an
fsync per write that acknowledgement means it is on disk, so even a SIGKILL of Redis loses none.

The tests run in file order; the destructive ones come last: ``kill -9`` of worker w1, a Redis crash
and restart (with w2 alone), and a graceful stop of w2 whose unfinished job a new worker w3 takes over.
The module's workers all serve one model; the last test starts a cluster of its own whose workers
serve different models.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from eqr.model.tasks.sudoku import SudokuTask
from eqr.server.broker.redis_protocol import GROUP, Delivery, Keys, decode_result, encode_entry
from eqr.server.jobs import Job
from tests.e2e.redis_cluster import PREFETCH, SLOTS, Cluster, cluster
from tests.live_server import MAZE, MAZE_SIZE, save_tiny_maze_model, save_tiny_model
from tests.server.sse import parse_sse

PUZZLE = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."
KEYS = Keys("eqr")
TINY_JOBS = KEYS.jobs("tiny")  # the tiny model's stream: the module's workers serve it alone
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("redis-mode")
    with cluster(folder, save_tiny_model(folder / "tiny"), ["w1", "w2"], persistent=True) as running:
        yield running


@pytest.fixture
def api(c: Cluster) -> Iterator[httpx.Client]:
    assert c.api is not None
    with httpx.Client(base_url=c.api.url, timeout=60) as client:
        yield client


def _samples(url: str) -> list[Any]:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def _gauge(url: str, name: str) -> float:
    return sum(s.value for s in _samples(url) if s.name == name)


def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _submit(api: httpx.Client, n: int, depth: int, first_seed: int = 0) -> list[str]:
    ids = []
    for seed in range(first_seed, first_seed + n):
        r = api.post("/v1/jobs", json={"puzzle": PUZZLE, "depth": depth, "seed": seed})
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    return ids


def _wait_done(api: httpx.Client, ids: list[str], timeout: float) -> dict[str, dict]:
    done: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(ids):
        assert time.monotonic() < deadline, f"{len(ids) - len(done)} of {len(ids)} jobs never finished"
        for job_id in ids:
            if job_id not in done:
                view = api.get(f"/v1/jobs/{job_id}")
                if view.status_code == 200 and view.json()["status"] == "done":
                    done[job_id] = view.json()["result"]
        time.sleep(0.1)
    return done


def _envelope(c: Cluster, job_id: str) -> dict:
    raw = c.redis.client().get(KEYS.result(job_id))
    assert raw is not None, f"no stored result for {job_id}"
    result, meta = decode_result(raw)
    return {"result": result, **meta}


def _queue_empty(c: Cluster, models: tuple[str, ...] = ("tiny",)) -> bool:
    r = c.redis.client()
    return all(r.xlen(KEYS.jobs(m)) == 0 and r.xpending(KEYS.jobs(m), GROUP)["pending"] == 0 for m in models)


def test_two_workers_solve_a_stream_of_puzzles(c: Cluster, api: httpx.Client):
    def solve(seed: int) -> httpx.Response:
        return api.post("/v1/solve", json={"puzzle": PUZZLE, "depth": 40, "seed": seed})

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(solve, range(24)))
    batch = api.post("/v1/solve/batch", json={"puzzles": [PUZZLE] * 6 + ["1" * 81], "depth": 40, "seed": 3})
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    assert all(r.json()["iterations"] == [40] and r.json()["model"] == "tiny" for r in responses)
    items = batch.json()["results"]
    assert [item["error"]["code"] if item["error"] else "ok" for item in items] == ["ok"] * 6 + ["invalid_puzzle"]
    assert len({json.dumps(item["result"]["answer"]) for item in items[:6]}) == 1  # same seed, same answer
    envelopes = [_envelope(c, r.json()["id"]) for r in responses]
    assert {e["worker"] for e in envelopes} == {"w1", "w2"}  # both workers took a share
    assert all(e["deliveries"] == 1 for e in envelopes)
    assert _queue_empty(c)


def test_streaming_across_processes(api: httpx.Client):
    body = {"puzzle": PUZZLE, "stream": True, "depth": 20, "seed": 1}
    with api.stream("POST", "/v1/solve", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(r.iter_lines())
    names = [name for name, _ in events]
    assert names[-1] == "result" and set(names[:-1]) == {"iteration"} and len(names) >= 10
    iterations = [data["iteration"] for name, data in events if name == "iteration"]
    assert iterations == sorted(iterations) and iterations[-1] <= 20
    assert events[-1][1]["iterations"] == [20]


def test_the_api_node_refuses_a_preset_the_workers_model_does_not_take(api: httpx.Client):
    """The workers' card says which presets their model folder takes (none here); the API node enforces it."""
    assert api.get("/v1/models").json()["models"][0]["presets"] == []
    r = api.post("/v1/solve", json={"puzzle": PUZZLE, "preset": "paper"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "preset"
    assert "model 'tiny'" in r.json()["error"]["message"]


def test_the_api_node_never_loads_torch(c: Cluster, api: httpx.Client):
    """The API node holds no model: after serving solves, streams and errors its process has no torch
    mapped (its shared libraries are what an import of torch loads), while a worker does."""
    assert api.post("/v1/solve", json={"puzzle": PUZZLE, "depth": 3}).status_code == 200
    assert api.post("/v1/solve", json={"puzzle": "1" * 81}).status_code == 422
    assert api.get("/v1/models").status_code == 200 and api.get("/metrics").status_code == 200

    def maps(proc) -> str:
        return Path(f"/proc/{proc.process.pid}/maps").read_text()

    assert c.api is not None and "libtorch" not in maps(c.api)
    assert "libtorch" in maps(next(iter(c.workers.values())))  # the check can see torch where it is


def test_cancel_across_processes_frees_the_worker_slots(c: Cluster, api: httpx.Client):
    workers = [w.url for w in c.workers.values()]
    job_id = api.post("/v1/jobs", json={"puzzle": PUZZLE, "depth": 1_000_000, "breadth": 2}).json()["id"]
    _until(lambda: sum(_gauge(w, "eqr_live_slots") for w in workers) == 2, 10, "the job to hold two slots")
    _until(lambda: api.get(f"/v1/jobs/{job_id}").json().get("status") == "running", 5, "the job to show as running")
    view = api.delete(f"/v1/jobs/{job_id}")
    assert view.status_code == 200 and view.json()["status"] == "cancelled"
    assert view.json()["result"]["status"] == "cancelled" and max(view.json()["result"]["iterations"]) > 0
    assert api.get(f"/v1/jobs/{job_id}").json() == view.json()  # read back from Redis: still cancelled
    _until(lambda: sum(_gauge(w, "eqr_live_slots") for w in workers) == 0, 5, "the worker to free its slots")
    assert _queue_empty(c)


def test_a_preempted_job_answers_as_uninterrupted_in_a_worker(c: Cluster, api: httpx.Client):
    """Workers run the fair scheduler: a job preempted by higher-priority work and resumed later returns
    what it returns alone (the same answer, iterations and convergence score)."""
    long = {"puzzle": PUZZLE, "depth": 120, "breadth": SLOTS, "seed": 7}
    reference = api.post("/v1/solve", json=long)
    assert reference.status_code == 200, reference.text
    workers = [w.url for w in c.workers.values()]

    def moved(name: str) -> float:
        return sum(_gauge(w, name) for w in workers)

    before = moved("eqr_preemptions_total"), moved("eqr_resumes_total")
    ids = [api.post("/v1/jobs", json=long).json()["id"] for _ in range(2)]  # a worker's slots each
    _until(lambda: sum(_gauge(w, "eqr_live_slots") for w in workers) == 2 * SLOTS, 10, "both jobs to run")
    urgent = api.post("/v1/solve", json={"puzzle": PUZZLE, "depth": 5, "breadth": SLOTS, "priority": 5, "seed": 1})
    assert urgent.status_code == 200 and urgent.json()["iterations"] == [5] * SLOTS
    done = _wait_done(api, ids, 60)
    assert moved("eqr_preemptions_total") >= before[0] + SLOTS and moved("eqr_resumes_total") >= before[1] + SLOTS
    want = {k: reference.json()[k] for k in ("answer", "iterations", "convergence_score")}
    for job in done.values():
        assert {k: job[k] for k in want} == want


def test_dead_letter_after_too_many_deliveries(c: Cluster, api: httpx.Client):
    """A job whose consumers keep dying ends in the dead-letter stream, and its caller gets an error.

    "ghost" plays the consumers that died holding it: it reads the job in the same transaction that
    adds it (no real worker can take it first), then is handed it again twice (XCLAIM counts each
    as a delivery). The next reclaim by a real worker is delivery 4, over the limit of 3.
    """
    r = c.redis.client()
    job = Job([int(t) for t in SudokuTask().encode(PUZZLE)], model="tiny")
    pipe = r.pipeline(transaction=True)
    pipe.xadd(TINY_JOBS, encode_entry(Delivery(job, "", False, True)))
    pipe.set(KEYS.kept(job.id), "pending", px=600_000)
    pipe.xreadgroup(GROUP, "ghost", {TINY_JOBS: ">"}, count=1)
    entry_id, _, [[_, [(read_id, _)]]] = pipe.execute()
    assert read_id == entry_id
    for _ in range(2):
        r.xclaim(TINY_JOBS, GROUP, "ghost", 0, [entry_id])
    assert r.xpending_range(TINY_JOBS, GROUP, entry_id, entry_id, 1)[0]["times_delivered"] == 3
    [result] = _wait_done(api, [job.id], timeout=15).values()
    assert result["status"] == "failed" and "dead-lettered after 4 deliveries" in result["error"]
    [(_, dead)] = r.xrange(KEYS.dead, count=1)
    assert dead["entry_id"] == entry_id and dead["deliveries"] == "4" and json.loads(dead["job"])["id"] == job.id
    assert dead["model"] == "tiny" and dead["worker"] in c.workers
    assert _queue_empty(c)
    r.xgroup_delconsumer(TINY_JOBS, GROUP, "ghost")


def test_a_job_in_another_models_stream_fails_instead_of_running(c: Cluster, api: httpx.Client):
    """Only the API writes entries, each to its own model's stream; one that names another model (a
    bug, or a hand-made entry) is answered with a failed result, never run on the wrong model."""
    job = Job([int(t) for t in SudokuTask().encode(PUZZLE)], model="maze-tiny")
    r = c.redis.client()
    pipe = r.pipeline(transaction=True)
    pipe.xadd(TINY_JOBS, encode_entry(Delivery(job, "", False, True)))
    pipe.set(KEYS.kept(job.id), "pending", px=600_000)
    pipe.execute()
    [result] = _wait_done(api, [job.id], timeout=10).values()
    assert result["status"] == "failed" and result["iterations"] == [0]
    assert "names model 'maze-tiny' but sits in the stream of 'tiny'" in result["error"]
    assert _queue_empty(c)


def test_kill_9_of_a_worker_mid_job_loses_and_repeats_nothing(c: Cluster, api: httpx.Client):
    """Every accepted job completes, with exactly one result: the victim's jobs are reclaimed by the
    survivor after the claim idle time, recomputed from scratch, and reported once."""
    depth, r = 400, c.redis.client()
    ids = _submit(api, 12, depth)
    sync: dict[int, httpx.Response] = {}

    def call(seed: int) -> None:
        sync[seed] = api.post("/v1/solve", json={"puzzle": PUZZLE, "depth": depth, "seed": seed})

    callers = [threading.Thread(target=call, args=(seed,)) for seed in (100, 101)]
    for t in callers:
        t.start()
    _until(lambda: r.xpending_range(TINY_JOBS, GROUP, "-", "+", 100, "w1"), 10, "w1 to hold jobs")
    c.workers["w1"].kill()  # at once: the jobs it holds are queued in its engine or half computed
    held = [p["message_id"] for p in r.xpending_range(TINY_JOBS, GROUP, "-", "+", 100, "w1")]
    assert held, "w1 finished everything before it was killed"
    held_jobs = {json.loads(r.xrange(TINY_JOBS, e, e)[0][1]["job"])["id"] for e in held}

    results = _wait_done(api, ids, timeout=60)
    for t in callers:
        t.join(timeout=60)
    assert sorted(sync) == [100, 101] and all(resp.status_code == 200 for resp in sync.values())
    reported = {**results, **{resp.json()["id"]: resp.json() for resp in sync.values()}}
    assert held_jobs <= set(reported)
    for job_id, result in reported.items():
        stored = _envelope(c, job_id)
        assert result["status"] == "max_iterations" and result["iterations"] == [depth]
        assert result["seed"] == stored["result"].seed
        assert result["timings"]["compute_ms"] == stored["result"].compute_ms  # the stored result is the reported one
        if job_id in held_jobs:
            assert stored["worker"] == "w2" and stored["deliveries"] == 2
    again = _wait_done(api, ids, timeout=5)
    assert again == results  # asked again, the same single answer
    assert _queue_empty(c)
    assert _gauge(c.workers["w2"].url, "eqr_worker_reclaimed_total") >= len(held)


def test_redis_crash_and_restart_loses_no_accepted_job(c: Cluster, api: httpx.Client):
    depth = 200
    ids = _submit(api, 10, depth, first_seed=200)  # more than w2 takes at once: some wait in the stream
    sync: dict[str, httpx.Response] = {}
    caller = threading.Thread(
        target=lambda: sync.setdefault("r", api.post("/v1/solve", json={"puzzle": PUZZLE, "depth": depth, "seed": 9}))
    )
    caller.start()
    time.sleep(0.3)
    c.redis.kill()  # SIGKILL: acknowledged writes are in the append-only file (fsync always)

    def unready() -> bool:
        ready = api.get("/readyz")
        return ready.status_code == 503 and "Redis" in ready.json()["error"]["message"]

    _until(unready, 5, "the API to report Redis down")
    refused = api.post("/v1/jobs", json={"puzzle": PUZZLE})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "not_ready"  # refused: not accepted

    c.redis.start()  # same port, same folder: the AOF is replayed
    _until(lambda: api.get("/readyz").status_code == 200, 10, "the API to recover")
    results = _wait_done(api, ids, timeout=30)
    caller.join(timeout=30)
    assert sync["r"].status_code == 200 and sync["r"].json()["iterations"] == [depth]
    assert all(r["status"] == "max_iterations" and r["iterations"] == [depth] for r in results.values())
    assert _queue_empty(c)
    assert all(proc.alive() for proc in [c.api, c.workers["w2"]] if proc is not None)


def test_graceful_worker_stop_finishes_what_it_can_and_hands_back_the_rest(c: Cluster, api: httpx.Client):
    """SIGTERM: the worker stops taking jobs, finishes running ones for the drain time (1 s here),
    hands the rest back at once (idle past the claim time), and leaves the API with no live worker."""
    r = c.redis.client()
    short = api.post("/v1/jobs", json={"puzzle": PUZZLE, "depth": 100}).json()["id"]
    long = api.post("/v1/jobs", json={"puzzle": PUZZLE, "depth": 1_000_000, "timeout_ms": 4000}).json()["id"]
    _until(lambda: api.get(f"/v1/jobs/{long}").json().get("status") == "running", 5, "w2 to start the long job")
    assert c.workers["w2"].terminate(timeout=60) == 0
    assert _envelope(c, short)["worker"] == "w2"  # finished during the drain
    [pending] = r.xpending_range(TINY_JOBS, GROUP, "-", "+", 10)
    assert pending["consumer"] == "w2" and pending["time_since_delivered"] >= 2000  # claimable at once

    def no_worker() -> bool:
        ready = api.get("/readyz")
        return ready.status_code == 503 and "no live worker" in ready.json()["error"]["message"]

    _until(no_worker, 3, "the API to notice that no worker is left")  # at once: w2 removed its heartbeat
    # served a moment ago: still known, with no live worker, and unavailable (503) rather than unknown (404)
    assert [(m["name"], m["workers"]) for m in api.get("/v1/models").json()["models"]] == [("tiny", 0)]
    for body in ({"puzzle": PUZZLE}, {"puzzle": PUZZLE, "model": "tiny"}):
        refused = api.post("/v1/solve", json=body)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "model_unavailable"
        assert int(refused.headers["Retry-After"]) >= 1

    c.wait_healthy(c.start_worker("w3"), "/healthz")
    [result] = _wait_done(api, [long], timeout=15).values()
    assert result["status"] == "deadline"  # its 4 s budget ran out while no worker was up
    stored = _envelope(c, long)
    assert stored["worker"] == "w3" and stored["deliveries"] == 2
    assert _queue_empty(c)


def test_each_job_reaches_a_worker_that_serves_its_model(tmp_path: Path):
    """w1 serves the tiny Sudoku model, w2 the tiny 5x5 maze model: the API node lists both (its default
    first), each job is computed by the worker that has its model, and a model nobody serves is a 404
    naming the served ones. Then one worker started with both folders serves both alone, and the
    default model is still the API node's, not that worker's first folder."""
    tiny, maze = save_tiny_model(tmp_path / "tiny"), save_tiny_maze_model(tmp_path / "maze-tiny")
    with cluster(tmp_path, tiny, ["w1", "w2"], persistent=False, models={"w2": [maze]}) as c:
        assert c.api is not None
        api = httpx.Client(base_url=c.api.url, timeout=60)
        models = api.get("/v1/models").json()["models"]
        assert [(m["name"], m["task"], m["board"]["rows"]) for m in models] == [
            ("tiny", "sudoku", 9),
            ("maze-tiny", "maze", MAZE_SIZE),
        ]

        def solve(seed: int) -> httpx.Response:
            if seed % 2:
                return api.post("/v1/solve", json={"puzzle": PUZZLE, "depth": 10, "seed": seed})  # the default
            return api.post("/v1/solve", json={"model": "maze-tiny", "puzzle": MAZE, "depth": 10, "seed": seed})

        with ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(solve, range(12)))
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
        computed_by: dict[str, set[str]] = {}
        for r in responses:
            computed_by.setdefault(r.json()["model"], set()).add(_envelope(c, r.json()["id"])["worker"])
        assert computed_by == {"tiny": {"w1"}, "maze-tiny": {"w2"}}
        maze_answer = next(r.json()["answer"] for r in responses if r.json()["model"] == "maze-tiny")
        assert isinstance(maze_answer, list) and len(maze_answer) == MAZE_SIZE  # shown by the maze task, as sent

        unknown = api.post("/v1/solve", json={"model": "chess", "puzzle": PUZZLE})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
        assert "'tiny'" in unknown.json()["error"]["message"] and "'maze-tiny'" in unknown.json()["error"]["message"]
        assert api.get("/v1/models/chess").status_code == 404
        wrong_task = api.post("/v1/solve", json={"model": "maze-tiny", "puzzle": PUZZLE})
        assert wrong_task.status_code == 422  # read by the maze model's task, on the API node
        assert _queue_empty(c, ("tiny", "maze-tiny"))

        for name in ("w1", "w2"):
            assert c.workers[name].terminate(timeout=60) == 0

        def workers() -> list[tuple[str, int]]:
            return [(m["name"], m["workers"]) for m in api.get("/v1/models").json()["models"]]

        _until(lambda: workers() == [("tiny", 0), ("maze-tiny", 0)], 5, "the models to have no live worker")
        c.wait_healthy(c.start_worker("w3", models=[maze, tiny]), "/healthz")
        c.wait_capacity(2 * SLOTS)  # one engine per model
        assert workers() == [("tiny", 1), ("maze-tiny", 1)]  # the API node's default first, whatever w3 lists first
        heartbeat = json.loads(c.redis.client().get(KEYS.worker("w3")))
        assert [card["name"] for card in heartbeat["cards"]] == ["maze-tiny", "tiny"]
        default = api.post("/v1/solve", json={"puzzle": PUZZLE, "depth": 5})
        maze_solve = api.post("/v1/solve", json={"model": "maze-tiny", "puzzle": MAZE, "depth": 5})
        assert default.status_code == maze_solve.status_code == 200, default.text + maze_solve.text
        assert (default.json()["model"], maze_solve.json()["model"]) == ("tiny", "maze-tiny")
        assert {_envelope(c, r.json()["id"])["worker"] for r in (default, maze_solve)} == {"w3"}

        # each model has its own room on the worker (its slots + prefetch): a full one leaves the other's open
        body = {"model": "tiny", "puzzle": PUZZLE, "depth": 1_000_000, "breadth": 2}
        fit = (SLOTS + PREFETCH) // 2  # jobs of breadth 2 the room takes; one more stays in the stream
        endless = [api.post("/v1/jobs", json=body).json()["id"] for _ in range(fit + 1)]
        r = c.redis.client()
        _until(lambda: r.xpending(KEYS.jobs("tiny"), GROUP)["pending"] == fit, 60, "w3 to fill the tiny model's room")
        maze_solve = api.post("/v1/solve", json={"model": "maze-tiny", "puzzle": MAZE, "depth": 5}, timeout=15)
        assert maze_solve.status_code == 200 and maze_solve.json()["iterations"] == [5]
        assert r.xlen(KEYS.jobs("tiny")) == fit + 1 and r.xpending(KEYS.jobs("tiny"), GROUP)["pending"] == fit
        for job_id in endless:
            assert api.delete(f"/v1/jobs/{job_id}").status_code == 200
        _until(lambda: _queue_empty(c, ("tiny", "maze-tiny")), 10, "the cancelled jobs to leave the streams")
        api.close()
