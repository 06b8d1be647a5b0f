"""``benchmarks/load.py`` in CI: a small load run in both modes and a 30-second soak, as the user runs them.

Each run starts its own deployment (``eqr serve``, or Redis + ``eqr api`` + 2 workers) on loopback
with the tiny test model, which never converges, so every request runs its whole depth of 16. The
script judges its own run (no unexpected error, nothing lost, every answer exactly once, idle and
every connection closed afterwards, and for the soak RSS growth under 10%); the test reads its
report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.live_server import save_tiny_model

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("load") / "tiny")


def load(tmp_path: Path, model: Path, *args: str, timeout_s: float) -> list[dict]:
    out = tmp_path / "report.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "load.py"), "--model", str(model), "--json", str(out), *args]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=ROOT)
    assert out.exists(), run.stdout + run.stderr
    reports = json.loads(out.read_text())
    failed = {r["mode"]: [name for name, ok in r["checks"].items() if not ok] for r in reports if not r["passed"]}
    assert run.returncode == 0 and not failed, f"{failed}\n{run.stdout}\n{run.stderr[-3000:]}"
    return reports


def test_a_small_load_loses_nothing_in_either_mode(tmp_path: Path, model: Path):
    reports = load(tmp_path, model, "--mode", "both", "--requests", "300", "--concurrency", "32", timeout_s=240)
    assert [r["mode"] for r in reports] == ["serve", "redis"]
    for r in reports:
        assert r["sent"] == r["answered"] == 300 and r["unexpected"] == r["lost"] == r["duplicate_ids"] == 0
        assert r["engine_finished"] == r["puzzles"] > 300  # batches answer several puzzles each
        assert r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] and r["ops_per_s"] > 0


def test_a_thirty_second_soak_leaks_nothing(tmp_path: Path, model: Path):
    (r,) = load(tmp_path, model, "--mode", "serve", "--soak", "30", "--concurrency", "32", timeout_s=240)
    assert r["unexpected"] == r["lost"] == 0 and r["answered"] > 100
    assert r["rss_growth"]["serve"] < 0.10
    assert r["end"]["client_connections"] == 0 and r["end"]["in_flight"] == r["end"]["queue_depth"] == 0
