"""``benchmarks/maze_kinds.py`` in CI: the per-kind table on the bundled maze model and the committed sets."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_per_kind_table_of_the_bundled_maze_model(tmp_path: Path):
    out = tmp_path / "kinds.txt"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "maze_kinds.py"), "--model", str(ROOT / "models" / "maze-small"),
        "--kinds", "perfect,rooms", "--limit", "6", "--out", str(out),
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    inference = json.loads((ROOT / "models" / "maze-small" / "config.json").read_text())["inference"]
    budget = inference["verify_budget"]
    rows = [line.split()[1:] for line in out.read_text().splitlines() if line.split()[1:2] in (["perfect"], ["rooms"])]
    assert [r[0] for r in rows] == ["perfect", "rooms"]
    for _kind, plain, its, verified, verified_its, wrong_verified, changed in rows:
        assert 0 < float(plain.rstrip("%")) <= 100 and 0 < float(verified.rstrip("%")) <= 100
        assert 0 < float(its) <= 64 and 0 < float(verified_its) <= budget
        assert (wrong_verified, changed) == ("0", "0")
    lengths = out.read_text().splitlines()[-1]
    assert "64x1 by path length, all kinds:" in lengths
    assert sum(int(n) for n in re.findall(r"\((\d+)\)", lengths)) == 12  # every maze in one length bucket
    # the folder's own rule and schedule, which a table from another folder may not share
    rule = f"convergence rule window {inference['window']}, tol {inference['tol']}; verified: restart after"
    said = f"{rule} {inference['verify_depth']}, budget {budget}, {inference['restart']} restarts"
    assert said in out.read_text() and said in run.stdout
