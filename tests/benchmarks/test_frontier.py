"""``benchmarks/frontier.py`` in CI: a few puzzles of each set, shallow, every policy with the paper
protocol's row shrunk; the table, the PNG and the closing fraction line (the accuracies of so few
puzzles mean nothing; the shape does)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from eqr.offline.policies import named, paper

ROOT = Path(__file__).resolve().parents[2]


def test_every_policy_gets_a_row_and_the_last_line_is_the_fraction(tmp_path: Path):
    png = tmp_path / "frontier.png"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "frontier.py"), "--limit", "3", "--depth", "8", "--cap", "4",
           "--paper-depth", "8", "--paper-breadth", "4", "--slots", "8", "--out", str(png)]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    out = run.stdout
    assert run.returncode == 0, out + run.stderr[-3000:]
    assert "maze11 3" in out.splitlines()[0]  # the mixed set includes mazes
    header = next(line for line in out.splitlines() if line.startswith("policy")).split()
    assert header[-2:] == ["overall", "iterations"] and "maze11" in header  # royle17 only where shared/ has it
    names = [p.name for p in named(8, 4, paper(8, 4))]
    assert "paper 8 x 4" in names
    for policy in names:
        row = next(line for line in out.splitlines() if line.startswith(policy) and "%" in line and ":" not in line)
        assert len(re.findall(r"\d+\.\d%", row)) == len(header) - 2, row  # each set and the overall
    assert png.stat().st_size > 10_000
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(
        r"best adaptive policy .+ reaches paper 8 x 4's accuracy \(.+\) at [\d.e-]+ of its iterations \(\d+ a puzzle\)",
        last,
    ) or re.fullmatch(r"no adaptive policy reaches paper 8 x 4's accuracy \(.+\) within one puzzle", last), last
