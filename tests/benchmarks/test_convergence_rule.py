"""``benchmarks/convergence_rule.py`` in CI: the rule sweep on the bundled model and the repo's puzzles."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_rule_sweep_table_plot_and_verdict(tmp_path: Path):
    plot = tmp_path / "rules.png"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "convergence_rule.py"), "--data",
        str(ROOT / "benchmarks" / "puzzles" / "easy50.csv"), "--limit", "6", "--depth", "12",
        "--windows", "1,3", "--tols", "0.05,inf", "--plot", str(plot),
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    rows = [line.split() for line in run.stdout.splitlines() if line.startswith("easy50.csv")]
    assert len(rows) in (4, 5)  # and the model's own rule when it is not one of the four
    assert sum(line.endswith("<- current") for line in run.stdout.splitlines()) == 1
    by_rule = {(int(r[1]), float(r[2])): (float(r[3]), int(r[4]), float(r[5])) for r in rows}
    # a looser rule never runs longer: (1, inf) leaves at the first unchanged board
    assert by_rule[(1, float("inf"))][2] <= by_rule[(1, 0.05)][2] <= by_rule[(3, 0.05)][2] <= 12
    assert by_rule[(3, float("inf"))][2] <= by_rule[(3, 0.05)][2]
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"
    assert re.search(r"^(cheapest rule losing no answer: window \d tol \S+: .* [\d.]+x|every rule loses .*)$",
                     run.stdout.strip().splitlines()[-1]), run.stdout  # fmt: skip
