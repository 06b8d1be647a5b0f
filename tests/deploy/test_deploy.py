"""Static checks of the deployment files, since no Docker engine runs here: the compose file, the
Prometheus config (with ``promtool``, from the OS package), Grafana provisioning and the Dockerfile.

That every query of the dashboard returns data needs running servers and a Prometheus: it is checked in
tests/e2e/test_prometheus_dashboard.py against a live API and live workers.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from eqr.server.cli import build_parser
from tests.e2e.redis_cluster import api_args, worker_args
from tests.requires import os_command

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def _options(args: list[str]) -> set[str]:
    return {a for a in args if a.startswith("--")}


def _mounts(service: str) -> dict[str, str]:
    """Container path → host path of a service's bind mounts."""
    pairs = [v.split(":")[:2] for v in SERVICES[service].get("volumes", []) if v.startswith("./")]
    return {target: source for source, target in pairs}


def test_promtool_accepts_the_prometheus_config():
    promtool = os_command("promtool", "prometheus")
    config = ROOT / "deploy/prometheus/prometheus.yml"
    run = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_compose_runs_the_stack_with_healthchecks():
    assert set(SERVICES) == {"redis", "api", "worker", "prometheus", "grafana"}
    assert all("healthcheck" in s for s in SERVICES.values())
    redis_cmd = SERVICES["redis"]["command"]
    assert "--appendonly" in redis_cmd and redis_cmd[redis_cmd.index("--appendfsync") + 1] == "always"
    assert SERVICES["worker"]["deploy"]["replicas"] >= 2
    for service, mounts in (("prometheus", _mounts("prometheus")), ("grafana", _mounts("grafana"))):
        assert mounts and all((ROOT / source).exists() for source in mounts.values()), service


def test_compose_commands_are_the_ones_the_tests_run():
    """Same subcommand; every flag compose passes is one the Redis tests pass too, and argparse takes it."""
    tested = {"api": api_args("redis://r", "h", 1, "m"), "worker": worker_args("redis://r", "m", "n", "h", 1)}
    for service in ("api", "worker"):
        command = SERVICES[service]["command"]
        assert command[0] == "eqr" and command[1] == service
        build_parser().parse_args(command[1:])
        assert _options(command) <= _options(tested[service]), f"{service}: untested flags"
        assert "redis://redis:6379/0" in command


def test_prometheus_scrapes_the_api_and_every_worker():
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job["dns_sd_configs"][0] for job in config["scrape_configs"]}
    api, worker = SERVICES["api"]["command"], SERVICES["worker"]["command"]
    assert jobs["eqr-api"]["names"] == ["api"] and jobs["eqr-api"]["port"] == int(api[api.index("--port") + 1])
    port = int(worker[worker.index("--metrics-port") + 1])
    assert jobs["eqr-worker"]["names"] == ["worker"] and jobs["eqr-worker"]["port"] == port


def _walk(node: Any, key: str) -> list[Any]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == key] + [x for v in node.values() for x in _walk(v, key)]
    if isinstance(node, list):
        return [x for v in node for x in _walk(v, key)]
    return []


def test_grafana_provisioning_finds_the_dashboard_and_its_datasource():
    prov = ROOT / "deploy/grafana/provisioning"
    [source] = yaml.safe_load((prov / "datasources/prometheus.yml").read_text())["datasources"]
    [provider] = yaml.safe_load((prov / "dashboards/eqr.yml").read_text())["providers"]
    dashboards = ROOT / _mounts("grafana")[provider["options"]["path"]]
    [dashboard] = [json.loads(p.read_text()) for p in dashboards.glob("*.json")]
    assert {d["uid"] for d in _walk(dashboard, "datasource")} == {source["uid"]}
    assert "prometheus:9090" in source["url"]
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in (
        "requests / s by status",
        "latency",
        "iterations to convergence",
        "distribution",
        "queue depth",
        "slot occupancy",
        "step time",
        "evictions",
        "workers",
    ):
        assert topic in titles, topic
    assert any(p["type"] == "heatmap" for p in dashboard["panels"])


def test_dockerfile_is_multi_stage_non_root_and_pins_torch():
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    assert re.search(r"^ARG BASE_IMAGE=", text, re.M) and re.search(r"^ARG TORCH_INDEX=.*/whl/cpu$", text, re.M)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    [pinned] = re.findall(r'"(torch==[^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pinned in text  # the image installs the very torch the project pins
