"""scripts/gpu-check: its dry run (every section at tiny sizes on the CPU) and its report's arithmetic.

The real run needs a lent GPU (docs/gpu/h200.md holds its report); the dry run keeps the script, the
benchmarks it drives and tests/gpu (pointed at a second CPU server) from rotting in the meantime.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu-check"

pytestmark = pytest.mark.slow


def load_script():
    loader = importlib.machinery.SourceFileLoader("gpu_check", str(SCRIPT))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("gpu_check", loader))
    sys.modules["gpu_check"] = module  # its dataclasses look their module up there
    loader.exec_module(module)
    return module


def test_the_dry_run_runs_every_section_and_reports_it(tmp_path: Path) -> None:
    cmd = [sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    logs = (tmp_path / "logs.txt").read_text() if (tmp_path / "logs.txt").exists() else ""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:] + logs[-4000:]
    doc = json.loads((tmp_path / "report.json").read_text())
    sections = {s["name"]: s for s in doc["sections"]}
    assert list(sections) == ["tests", "kernels", "engine", "training"]
    assert all(s["status"] == "passed" for s in sections.values())
    tests = sections["tests"]["data"]
    assert tests["tests"] >= 4 and tests["failures"] == tests["errors"] == tests["skipped"] == 0  # tests/gpu ran
    assert sections["engine"]["data"]["rows"][0]["slot_iterations_per_s"] > 0
    assert sections["training"]["data"]["steps"] >= 1
    assert "eager" in sections["kernels"]["data"]["steps"][0]["seconds"]
    report = (tmp_path / "report.md").read_text()
    for heading in ("## Tests", "## Kernels: whole step", "## Engine throughput", "## Training"):
        assert heading in report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs.txt", "report.json", "report.md"]


def test_the_report_states_the_acceptance_ratios() -> None:
    gpu_check = load_script()
    doc = {
        "steps": [
            {
                "hidden": 512,
                "batch": 256,
                "flops": 10**12,
                "mm_gflops": 600_000.0,
                "seconds": {"eager": 0.08, "compile+graphs": 0.03, "triton": 0.028, "triton+graphs": 0.025},
            }
        ]
    }
    row = gpu_check.kernel_summary(doc)["steps"][0]
    assert row["triton_vs_eager"] == pytest.approx(3.2)
    assert row["triton_vs_compile_graphs"] == pytest.approx(1.2)
    assert row["tflops"]["triton+graphs"] == pytest.approx(40.0)
    assert row["pct_bf16_peak"] == pytest.approx(100 * 40.0 / gpu_check.BF16_PEAK_TFLOPS)
