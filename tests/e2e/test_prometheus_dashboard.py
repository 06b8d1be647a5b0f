"""The Grafana dashboard and the alert rules, evaluated for real: a Prometheus server scrapes a live
Redis-mode stack (redis-server, ``eqr api``, two ``eqr worker`` processes serving the bundled Sudoku
model) under a short load, and every panel query of deploy/grafana/dashboards/eqr-serve.json must
return data through Prometheus's HTTP API, as Grafana would ask for it; so must the recording rule
the HPA of deploy/k8s/autoscaling/hpa scales on.

Prometheus runs the scrape jobs of deploy/prometheus/prometheus.yml (their names are what the
dashboard and the rules select on) with static targets instead of the compose DNS, every second,
and loads deploy/prometheus/alerts.yml.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.redis_cluster import Cluster, cluster
from tests.prometheus_server import PrometheusServer

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/dashboards/eqr-serve.json"
PROMETHEUS_CONFIG = ROOT / "deploy/prometheus/prometheus.yml"
SUDOKU = ROOT / "models/sudoku-small"
PUZZLE = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."
SCRAPE_S = 1
# Grafana's $__rate_interval: at least four scrape intervals, so that a rate always has samples
RATE_INTERVAL = f"{4 * SCRAPE_S}s"
LOAD_S, CLIENTS = 8.0, 16  # more clients than the two workers have room for: the stream backlog moves
pytestmark = pytest.mark.slow


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target, with Grafana's variables replaced as Grafana would."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
    queries = [(title, expr.replace("$__rate_interval", RATE_INTERVAL)) for title, expr in queries]
    unknown = [expr for _, expr in queries if "$" in expr]
    assert not unknown, f"a dashboard variable this test does not know how to fill: {unknown}"
    return queries


def scrape_config(c: Cluster) -> dict:
    """The deployment's scrape jobs, pointed at this stack's processes, and its alert rules."""
    deployed = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = {
        "eqr-api": [c.api.url.removeprefix("http://")] if c.api else [],
        "eqr-worker": [w.url.removeprefix("http://") for w in c.workers.values()],
    }
    jobs = []
    for job in deployed["scrape_configs"]:
        static = {k: v for k, v in job.items() if k != "dns_sd_configs"}
        static["static_configs"] = [{"targets": targets[job["job_name"]]}]
        jobs.append({**static, "scrape_interval": f"{SCRAPE_S}s"})
    assert {j["job_name"] for j in jobs} == set(targets)
    rules = [str(PROMETHEUS_CONFIG.parent / f) for f in deployed["rule_files"]]
    return {"global": {"evaluation_interval": f"{SCRAPE_S}s"}, "rule_files": rules, "scrape_configs": jobs}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, PrometheusServer]]:
    folder = tmp_path_factory.mktemp("prometheus")
    with cluster(folder, SUDOKU, ["w1", "w2"], persistent=False) as c:
        prometheus = PrometheusServer(folder, scrape_config(c)).start()
        try:
            yield c, prometheus
        finally:
            prometheus.stop()


def wait_targets_up(prometheus: PrometheusServer, count: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        targets = prometheus.api("targets")["activeTargets"]
        if len(targets) == count and all(t["health"] == "up" for t in targets):
            return
        assert time.monotonic() < deadline, f"targets not all up: {targets}"
        time.sleep(0.2)


def run_load(api_url: str) -> tuple[float, float]:
    """CLIENTS threads solving for LOAD_S seconds (an invalid puzzle first and then every tenth: rejections);
    returns the load's start and end (Unix time)."""
    start, errors = time.time(), []

    def client(n: int) -> None:
        with httpx.Client(base_url=api_url, timeout=60) as http:
            i = 0
            while time.time() - start < LOAD_S:
                i += 1
                if i % 10 == 1:
                    r = http.post("/v1/solve", json={"puzzle": "1" * 81})
                    expected = 422
                else:
                    r = http.post("/v1/solve", json={"puzzle": PUZZLE, "seed": n * 1000 + i, "breadth": 2})
                    expected = 200
                if r.status_code != expected:
                    errors.append(r.text)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    return start, time.time()


def test_every_dashboard_query_returns_data_and_every_rule_evaluates(stack: tuple[Cluster, PrometheusServer]):
    c, prometheus = stack
    assert c.api is not None
    wait_targets_up(prometheus, 1 + len(c.workers))
    start, end = run_load(c.api.url)
    time.sleep(2 * SCRAPE_S)  # the last scrape of the load's end, and a rule evaluation after it

    empty = []
    for title, expr in [*panel_queries(), ("the HPA's metric (a recording rule)", "eqr:unfinished_jobs")]:
        result = prometheus.api("query_range", query=expr, start=start, end=end + SCRAPE_S, step=SCRAPE_S)["result"]
        values = [float(v) for series in result for _, v in series["values"]]
        if not any(math.isfinite(v) for v in values):
            empty.append(f"{title}: {expr} -> {result}")
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)

    rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
    files = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["rule_files"]
    deployed = [g for f in files for g in yaml.safe_load((PROMETHEUS_CONFIG.parent / f).read_text())["groups"]]
    assert len(rules) == sum(len(g["rules"]) for g in deployed)
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
    firing = [a["labels"] for a in prometheus.api("alerts")["alerts"] if a["state"] == "firing"]
    assert not firing, f"alerts firing on a healthy stack: {firing}"

