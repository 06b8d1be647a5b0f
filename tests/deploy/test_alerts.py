"""The alert rules (deploy/prometheus/alerts.yml): promtool accepts them, their unit tests
(alerts.test.yml) pass, every alert is tested firing and has a runbook, and the compose stack's
Prometheus loads them. That the metrics they read are exported is checked against a live stack in
tests/e2e/test_prometheus_dashboard.py, which loads these rules into a real Prometheus."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.requires import os_command

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy/prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts.test.yml"
RUNBOOKS = ROOT / "docs/operations/runbooks.md"


def alerts() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([os_command("promtool", "prometheus"), *args], capture_output=True, text=True)


def test_promtool_checks_the_rules():
    run = promtool("check", "rules", str(RULES))
    assert run.returncode == 0 and f"{len(alerts())} rules found" in run.stdout, run.stdout + run.stderr


def test_promtool_unit_tests_of_the_rules_pass():
    run = promtool("test", "rules", str(RULE_TESTS))
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_alert_is_tested_firing():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    quiet = {case["alertname"] for test in tests for case in test["alert_rule_test"] if not case["exp_alerts"]}
    names = {rule["alert"] for rule in alerts()}
    assert names == fired, "every alert has a case where it fires"
    assert names == quiet, "and one where it stays quiet"


def test_every_alert_has_a_runbook_section():
    headings = set(re.findall(r"^## (\w+)$", RUNBOOKS.read_text(), flags=re.M))
    for rule in alerts():
        name = rule["alert"]
        assert name in headings, f"{name}: no '## {name}' section in {RUNBOOKS.relative_to(ROOT)}"
        assert rule["annotations"]["runbook"] == f"docs/operations/runbooks.md#{name.lower()}"
        assert rule["labels"]["severity"] in ("critical", "warning")


def test_prometheus_loads_the_rules_in_the_compose_stack():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = dict(v.split(":")[:2][::-1] for v in compose["services"]["prometheus"]["volumes"] if v.startswith("./"))
    config_dir = Path(mounts["/etc/prometheus/prometheus.yml"]).parent
    assert config["rule_files"] == ["alerts.yml"]
    assert Path(mounts["/etc/prometheus/alerts.yml"]) == config_dir / "alerts.yml"  # beside the config, as it names it
