"""``benchmarks/verified.py`` in CI: the budget curve read off one run agrees with a run at the smaller budget."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from verified import budget_curve, verified_policies  # noqa: E402


def test_budget_curve_on_plain_data():
    # (iterations, verified, right): verified at 40, verified at 300, never verified (spent all 1000)
    per_puzzle = [(40, True, True), (300, True, True), (1000, False, False)]
    small, mid, full = budget_curve(per_puzzle, [100, 500, 1000])
    assert small == {"budget": 100, "exact": 1 / 3, "verified": 1 / 3, "iterations": 240 / 3, "wrong_but_verified": 0}
    assert mid["exact"] == 2 / 3 and mid["iterations"] == (40 + 300 + 500) / 3
    assert full["iterations"] == 1340 / 3
    assert budget_curve([(10, True, False)], [10])[0]["wrong_but_verified"] == 1


def test_rows_without_a_stop_spend_their_budget_whatever_the_folder_sets():
    # the bundled Sudoku folder stops after 16 failures by default; a row named without a stop must not
    rows = dict(verified_policies(8, [500, 4000], ["full"], [None, 16], ["convergence", "q_halt"]))
    assert rows["verified 8, budget 4000"]["stuck_after"] == 4001
    assert rows["verified 8, budget 500, learned halting"] == {
        "verify": True, "budget": 500, "restart": "full", "stuck_after": 501, "halt": "q_halt"
    }  # fmt: skip
    assert rows["verified 8, budget 4000, stuck after 16"]["stuck_after"] == 16
    assert len(rows) == 8


def test_curve_point_matches_a_real_run_at_that_budget():
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "verified.py"), "--data",
        str(ROOT / "benchmarks" / "puzzles" / "top95.csv"), "--limit", "6", "--depth", "8", "--breadth", "1",
        "--quorum", "", "--budget", "24", "--curve", "24,96", "--slots", "4", "--concurrency", "6",
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    lines = run.stdout.splitlines()
    real = next(line for line in lines if line.startswith("verified 8, budget 24 ")).split()
    curve = {line.split()[0]: line.split() for line in lines if line.split() and line.split()[0] in ("24", "96")}
    # exact, iterations/puzzle, verified of the real budget-24 run == the curve's 24 row, read off the 96 run
    assert curve["24"][1:4] == [real[4], real[5], real[6]], run.stdout
    assert curve["96"][4] == "0" and curve["24"][4] == "0"


def test_restart_policies_early_stops_and_halting_rules_side_by_side():
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "verified.py"), "--data",
        str(ROOT / "benchmarks" / "puzzles" / "top95.csv"), "--limit", "3", "--depth", "4", "--breadth", "1",
        "--quorum", "", "--budget", "24", "--restart", "full,renoise", "--stuck-after", "2",
        "--halt", "convergence,q_halt", "--slots", "4", "--concurrency", "3",
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    rows = {line.split("  ")[0] for line in run.stdout.splitlines()}
    variants = [
        "verified 4, budget 24" + v + h
        for h in ("", ", learned halting")
        for v in ("", ", stuck after 2", ", renoise", ", renoise, stuck after 2")
    ]
    assert set(variants) <= rows, run.stdout
    ratios = [line for line in run.stdout.splitlines() if line.endswith("the iterations")]
    # every variant against the first (full restarts, no stop, the convergence rule)
    assert [r.split(" / ")[0] for r in ratios[-7:]] == variants[1:], run.stdout
    assert {r.split(" / ")[1].split(":")[0] for r in ratios[-7:]} == {variants[0]}, run.stdout
