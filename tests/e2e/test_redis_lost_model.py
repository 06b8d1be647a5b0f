"""Redis mode when a model's only worker dies (``kill -9``), with real processes and a real redis-server.

Two workers, one model each, named so that name order would put the maze worker first: the API
node's default model is its own setting (here the Sudoku model ``tiny``), never a worker's. Then the
maze worker is killed while a synchronous solve, a stream and an async job of the maze model wait:
the model stays known with no live worker, new requests for it get 503 ``model_unavailable`` with
``Retry-After`` (not 404), ``/readyz``, ``/v1/models`` and the metrics say which models have live
workers, the waiting callers get 504 ``worker_timeout`` after ``--unserved-wait`` (3 s here), and
DELETE of the dead worker's async job answers at once with the cancelled job.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from eqr.server.broker.redis_protocol import GROUP, Keys
from tests.e2e.redis_cluster import UNSERVED_WAIT_S, cluster
from tests.live_server import MAZE, save_tiny_maze_model, save_tiny_model
from tests.server.sse import parse_sse

PUZZLE = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."
ENDLESS = 1_000_000  # iterations: the tiny models never converge, so such a job runs until stopped
pytestmark = pytest.mark.slow


def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _model_workers(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    return {s.labels["model"]: s.value for s in samples if s.name == "eqr_model_workers"}


def test_a_model_whose_only_worker_died_is_unavailable_not_unknown(tmp_path: Path):
    tiny, maze = save_tiny_model(tmp_path / "tiny"), save_tiny_maze_model(tmp_path / "maze-tiny")
    with cluster(tmp_path, tiny, ["a-maze", "b-sudoku"], persistent=False, models={"a-maze": [maze]}) as c:
        assert c.api is not None
        api = httpx.Client(base_url=c.api.url, timeout=60)
        listed = api.get("/v1/models").json()
        assert listed["default"] == "tiny"
        assert [(m["name"], m["workers"]) for m in listed["models"]] == [("tiny", 1), ("maze-tiny", 1)]
        default = api.post("/v1/solve", json={"puzzle": PUZZLE, "depth": 3})  # the README's first request
        assert default.status_code == 200 and default.json()["model"] == "tiny", default.text

        maze_body = {"model": "maze-tiny", "puzzle": MAZE, "depth": ENDLESS}
        job = api.post("/v1/jobs", json=maze_body).json()["id"]
        answers: dict[str, httpx.Response | list] = {}

        def solve() -> None:
            answers["solve"] = api.post("/v1/solve", json=maze_body)

        def stream() -> None:
            with api.stream("POST", "/v1/solve", json={**maze_body, "stream": True, "stream_every": 1000}) as r:
                answers["stream"] = parse_sse(r.iter_lines())

        callers = [threading.Thread(target=solve), threading.Thread(target=stream)]
        for t in callers:
            t.start()
        _until(lambda: api.get(f"/v1/jobs/{job}").json()["status"] == "running", 10, "the maze worker to run the job")
        r = c.redis.client()
        stream_key = Keys("eqr").jobs("maze-tiny")
        _until(lambda: r.xpending(stream_key, GROUP)["pending"] == 3, 10, "the maze worker to hold all three")

        c.workers["a-maze"].kill()  # SIGKILL: no goodbye, its heartbeat just stops
        killed = time.monotonic()
        _until(lambda: _model_workers(c.api.url).get("maze-tiny") == 0, 10, "the API to see no maze worker")
        assert _model_workers(c.api.url) == {"tiny": 1, "maze-tiny": 0}
        models = api.get("/v1/models").json()["models"]
        assert [(m["name"], m["workers"]) for m in models] == [("tiny", 1), ("maze-tiny", 0)]
        assert api.get("/v1/models/maze-tiny").json()["workers"] == 0
        ready = api.get("/readyz")  # the Sudoku model is still served: ready, saying which model is not
        assert ready.status_code == 200 and ready.json()["models"] == {"tiny": 1, "maze-tiny": 0}

        refused = api.post("/v1/solve", json={**maze_body, "depth": 3})
        error = refused.json()["error"]
        assert refused.status_code == 503 and error["code"] == "model_unavailable" and error["field"] == "model"
        assert "model 'maze-tiny' has no live worker now" in error["message"]
        assert int(refused.headers["Retry-After"]) >= 1
        assert api.post("/v1/jobs", json=maze_body).status_code == 503
        assert api.post("/v1/solve", json={"puzzle": PUZZLE, "depth": 3}).status_code == 200  # the other model

        started = time.monotonic()
        cancelled = api.delete(f"/v1/jobs/{job}")
        took = time.monotonic() - started
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
        assert cancelled.json()["result"]["status"] == "cancelled" and took < 1.0, took
        assert api.get(f"/v1/jobs/{job}").json() == cancelled.json()

        for t in callers:
            t.join(timeout=30)
        waited = time.monotonic() - killed
        solved = answers["solve"]
        assert isinstance(solved, httpx.Response) and solved.status_code == 504, solved
        error = solved.json()["error"]
        assert error["code"] == "worker_timeout" and error["field"] == "model" and "'maze-tiny'" in error["message"]
        (name, data) = answers["stream"][-1]
        assert name == "error" and data["error"]["code"] == "worker_timeout"
        # bounded by the heartbeat TTL (1.5 s) plus --unserved-wait, not by how long the worker stays away
        assert UNSERVED_WAIT_S <= waited < UNSERVED_WAIT_S + 6, waited
        # every job of the dead worker was cancelled and left the stream: none runs later for nobody
        _until(lambda: r.xlen(stream_key) == 0 and r.xpending(stream_key, GROUP)["pending"] == 0, 5, "no maze jobs")
        api.close()
