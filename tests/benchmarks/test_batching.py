"""``benchmarks/batching.py`` in CI: a small mixed load on the bundled model, from the repo's puzzles.

Timings on a shared CI machine mean little, so the test checks what does not depend on them: both
modes give the very same answers (only the scheduling differs), continuous batching does less
work than static batching on a mixed load, and the table ends with the wall-time ratio and its share of the work ratio.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_small_mixed_load_same_answers_and_less_work():
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "batching.py"), "--data", str(ROOT / "benchmarks" / "puzzles"),
        "--puzzles", "20", "--slots", "8", "--depth", "16", "--alone", "3", "--rounds", "3",
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    out = run.stdout
    assert run.returncode == 0, out + run.stderr[-3000:]
    assert "20 puzzles (16 easy, 4 hard)" in out and "same answers in both modes: 20/20" in out
    work = float(re.search(r"work static/continuous \(slot-iterations, timing-free\): ([\d.]+)x", out).group(1))
    assert work > 1.2, out  # static runs every batch as long as its slowest member
    assert re.search(r"easy p99 \(slot→result\) mixed/alone: [\d.]+x", out)
    assert re.search(r"overhead [+-][\d.]+%", out)
    for mode in ("continuous", "static"):  # where the wall time goes: the model step or around it
        step = re.search(mode + r": ([\d.]+) s of ([\d.]+) s wall in the model step \((\d+)%\)", out)
        assert step and 0 < float(step.group(1)) <= float(step.group(2)) + 0.05, out
    *_, wall_line, share_line = out.strip().splitlines()
    assert re.fullmatch(r"continuous/static: \d+\.\d\dx", wall_line), out
    wall = float(wall_line.split()[-1].rstrip("x"))
    share = re.fullmatch(r"wall ratio / slot-iteration ratio: (\d+)%", share_line)  # the ratio of the two ratios
    assert share and abs(int(share.group(1)) - round(100 * wall / work)) <= 2, out
