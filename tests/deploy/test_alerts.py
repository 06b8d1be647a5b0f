"""The alert rules (deploy/prometheus/alerts.yml) and the autoscaling recording rule
(autoscaling.yml): promtool accepts them, their unit tests (rules.test.yml) pass, every alert is
tested firing and quiet and has a runbook, and the compose stack's Prometheus loads them. That they
evaluate against what a live stack exports is checked by tests/e2e/test_prometheus_dashboard.py,
which loads them into a real Prometheus."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.requires import os_command

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy/prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_FILES = [PROMETHEUS / "alerts.yml", PROMETHEUS / "autoscaling.yml"]
RULE_TESTS = PROMETHEUS / "rules.test.yml"
RUNBOOKS = ROOT / "docs/operations/runbooks.md"


def alerts() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([os_command("promtool", "prometheus"), *args], capture_output=True, text=True)


def test_promtool_checks_the_rules():
    run = promtool("check", "rules", *map(str, RULE_FILES))
    assert run.returncode == 0 and f"{len(alerts())} rules found" in run.stdout, run.stdout + run.stderr


def test_promtool_unit_tests_of_the_rules_pass():
    run = promtool("test", "rules", str(RULE_TESTS))
    assert run.returncode == 0, run.stdout + run.stderr
    assert yaml.safe_load(RULE_TESTS.read_text())["rule_files"] == [f.name for f in RULE_FILES]


def test_every_alert_is_tested_firing():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
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
    assert config["rule_files"] == [f.name for f in RULE_FILES]
    for name in config["rule_files"]:  # mounted beside the config, as it names them
        assert Path(mounts[f"/etc/prometheus/{name}"]) == config_dir / name
