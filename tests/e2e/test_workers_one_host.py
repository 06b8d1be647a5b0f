"""Several ``eqr worker`` processes on one host: each needs its own /metrics port.

``--metrics-port 0`` lets each pick a free one, which it logs and advertises in its Redis heartbeat;
a fixed port that is taken stops the worker with one line naming the flag, not a traceback.
"""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from tests.e2e.redis_cluster import SLOTS, START_TIMEOUT_S, Cluster
from tests.live_server import save_tiny_model
from tests.redis_server import RedisServer

PUZZLE = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."


def test_two_workers_on_one_host_pick_their_own_metrics_ports(tmp_path: Path):
    c = Cluster(RedisServer(tmp_path), save_tiny_model(tmp_path / "tiny"), tmp_path)
    try:
        c.redis.start()
        api = c.start_api()
        workers = [c.start_worker(name, metrics_port=0) for name in ("w1", "w2")]
        urls = {w.name: c.find_metrics_url(w) for w in workers}
        assert len(set(urls.values())) == 2, urls
        for w in workers:
            c.wait_healthy(w, "/healthz")
            assert "eqr_live_slots" in httpx.get(f"{w.url}/metrics").text
            assert f"metrics and health on {w.url}" in w.log()  # the port it picked, in its log
        c.wait_healthy(api, "/readyz")
        c.wait_capacity(2 * SLOTS)
        body = {"puzzle": PUZZLE, "depth": 3}
        assert httpx.post(f"{api.url}/v1/solve", json=body, timeout=30).json()["iterations"] == [3]
        assert all(w.alive() for w in workers)
    finally:
        c.close()


def test_a_taken_metrics_port_is_one_line_naming_the_flag(tmp_path: Path):
    c = Cluster(RedisServer(tmp_path), save_tiny_model(tmp_path / "tiny"), tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            c.redis.start()
            worker = c.start_worker("late", metrics_port=port)
            assert worker.process.wait(timeout=START_TIMEOUT_S) == 2
        finally:
            c.close()
    err = worker.log()
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"eqr worker: --metrics-port {port}:") and "in use" in err and "--metrics-port 0" in err
