"""``benchmarks/maze_convergence.py`` in CI: iterations to convergence by path length, bundled maze model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "evalsets" / "maze" / "maze11-random-300.jsonl"


def test_every_maze_lands_in_one_length_row_and_the_plot_is_written(tmp_path: Path):
    plot = tmp_path / "convergence.png"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "maze_convergence.py"), "--data", str(DATA), "--limit", "24",
        "--bucket", "8", "--out", str(plot),
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    lengths = [json.loads(line)["length"] for line in DATA.read_text().splitlines()[:24]]
    rows = re.findall(r"^\s+(\d+)-(\d+)\s+(\d+)\s+(\d+)%", run.stdout, re.M)
    assert rows and sum(int(n) for _, _, n, _ in rows) == 24  # every maze counted once
    for lo, hi, n, _ in rows:  # each row counts the mazes whose path length falls in it
        assert int(hi) - int(lo) == 7 and int(n) == sum(int(lo) <= x <= int(hi) for x in lengths)
    inference = json.loads((ROOT / "models" / "maze-small" / "config.json").read_text())["inference"]
    assert f"rule window {inference['window']} tol {inference['tol']:g}" in run.stdout  # the folder's, as served
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
