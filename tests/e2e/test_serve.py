"""End to end: a real ``eqr serve`` process on a free port, driven over HTTP.

One server per module (start-up imports torch and loads the model, which costs seconds). The tiny
model's convergence tolerance is 0, so every trajectory runs its whole depth and timings are
predictable; the SIGTERM test runs last because it ends the process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from eqr.model.checkpoint import save_model
from eqr.model.config import EqRConfig
from eqr.model.network import EqRNetwork
from tests.server.sse import parse_sse

TINY = EqRConfig(hidden_size=16, expansion=2, multiple_of=16, L_layers=1, H_cycles=1, L_cycles=1, halt_max_steps=4)
PUZZLE = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."
START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    folder = save_model(
        tmp_path_factory.mktemp("e2e") / "tiny-e2e",
        EqRNetwork(TINY),
        {"task": "sudoku", "inference": {"depth": 6, "noise": 0.01, "window": 2, "tol": 0.0}},
    )
    port = _free_port()
    env = {**os.environ, "EQR_MODEL": str(folder), "EQR_DRAIN_TIMEOUT_S": "30", "EQR_LOG_LEVEL": "warning"}
    log = (Path(folder) / "server.log").open("w+")
    cmd = [sys.executable, "-m", "eqr.server.cli", "serve", "--port", str(port), "--slots", "8"]
    proc = subprocess.Popen([*cmd, "--threads", "1", "--max-depth", "1000000"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        with httpx.Client(base_url=base, timeout=5) as client:
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    pytest.fail(f"eqr serve exited with {proc.returncode}:\n{log.read()}")
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("eqr serve did not become ready in time")
                time.sleep(0.1)
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server[1], timeout=30) as c:
        yield c


def test_solves_puzzles_over_http(client: httpx.Client):
    grid = [[int(ch) if ch != "." else 0 for ch in PUZZLE[r * 9 : r * 9 + 9]] for r in range(9)]
    for puzzle in (PUZZLE, grid):
        r = client.post("/v1/solve", json={"puzzle": puzzle, "seed": 3, "breadth": 2})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "tiny-e2e" and body["status"] == "max_iterations"
        assert body["iterations"] == [6, 6] and len(body["answer"]) == 81 and len(body["grid"]) == 9
    batch = client.post("/v1/solve/batch", json={"puzzles": [PUZZLE, "1" * 81, PUZZLE]}).json()["results"]
    assert [bool(item["result"]) for item in batch] == [True, False, True]
    assert batch[1]["error"]["code"] == "invalid_puzzle" and batch[1]["error"]["field"] == "puzzles.1"


def test_sse_stream_over_http(client: httpx.Client):
    with client.stream("POST", "/v1/solve", json={"puzzle": PUZZLE, "stream": True, "depth": 6}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(r.iter_lines())
    names = [name for name, _ in events]
    assert names[-1] == "result" and set(names[:-1]) == {"iteration"} and len(names) >= 2
    iterations = [data["iteration"] for name, data in events if name == "iteration"]
    assert iterations == sorted(iterations) and iterations[-1] <= 6
    assert all(len(data["board"]) == 81 for name, data in events if name == "iteration")
    assert len(events[-1][1]["answer"]) == 81 and events[-1][1]["iterations"] == [6]


def test_metrics_and_models(client: httpx.Client):
    info = client.get("/v1/models").json()["models"][0]
    assert info["name"] == "tiny-e2e" and info["caps"]["slots"] == 8
    text = client.get("/metrics").text
    assert "eqr_iterations_to_convergence_count" in text and "eqr_requests_total" in text


def _gauges(client: httpx.Client) -> dict[str, float]:
    return {
        s.name: s.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for s in family.samples
        if s.name in ("eqr_live_slots", "eqr_requests_in_flight", "eqr_queue_depth")
    }


def test_closing_a_stream_mid_way_frees_its_slots(client: httpx.Client):
    forever = {"puzzle": PUZZLE, "stream": True, "depth": 1_000_000, "breadth": 3}
    with client.stream("POST", "/v1/solve", json=forever) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        while not next(lines).startswith("event: iteration"):
            pass
        assert _gauges(client)["eqr_live_slots"] == 3  # the stream holds its three slots while open
    # the connection is closed now: the server must notice and give the slots back within a few steps
    deadline = time.monotonic() + 10
    while (gauges := _gauges(client)) != {"eqr_live_slots": 0, "eqr_requests_in_flight": 0, "eqr_queue_depth": 0}:
        assert time.monotonic() < deadline, f"slots not freed after the client left: {gauges}"
        time.sleep(0.05)


def test_sigterm_drains_running_work_then_exits_zero(server, client: httpx.Client):
    proc, _ = server
    # effectively unbounded depth with a deadline: in flight for ~4 s whatever the machine's speed
    slow = {"puzzle": PUZZLE, "depth": 1_000_000, "timeout_ms": 4000}
    answer: dict[str, httpx.Response] = {}
    worker = threading.Thread(target=lambda: answer.setdefault("r", client.post("/v1/solve", json=slow)))
    worker.start()
    deadline = time.monotonic() + 10
    while client.get("/readyz").json().get("in_flight", 0) < 1:
        assert time.monotonic() < deadline, "the slow request never started"
        time.sleep(0.02)

    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with httpx.Client(base_url=server[1], timeout=5) as probe:
        ready = probe.get("/readyz")
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "draining"
        refused = probe.post("/v1/solve", json={"puzzle": PUZZLE})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "draining"

    worker.join(timeout=30)
    assert answer["r"].status_code == 200 and answer["r"].json()["status"] == "deadline"
    assert proc.wait(timeout=30) == 0
