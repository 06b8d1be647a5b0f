"""One seed, one set of trajectories: ``eqr solve --seed S`` offline and a server request with seed S agree.

Both run the same engine (plan, policies, scheduler, slot pool, runner, CPU fast step) from the
same seed derivation, so with the same depth, breadth and noise they answer the same board
with the same iteration counts per trajectory. On these top95 puzzles the bundled model's
trajectories converge at different iterations, or not at all within the depth.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from eqr.server.cli import main
from tests.live_server import serve

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "models" / "sudoku-small"
MEDIUM = "52...6.........7.13...........4..8..6......5...........418.........3..2...87....."  # top95 #2
HARD = "4.....8.5.3..........7......2.....6.....8.4......1.......6.3.7.5..2.....1.4......"  # top95 #1

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundled_server(tmp_path_factory):
    with serve(BUNDLED, "--slots", "16", log_dir=tmp_path_factory.mktemp("bundled")) as server:
        yield server


@pytest.mark.parametrize(("puzzle", "depth", "breadth", "seed"), [(MEDIUM, 24, 6, 7), (HARD, 24, 6, 3)])
def test_offline_and_http_run_the_same_trajectories(bundled_server, capsys, puzzle, depth, breadth, seed):
    args = ["--depth", str(depth), "--breadth", str(breadth), "--seed", str(seed), "--aggregate", "vote"]
    assert main(["solve", puzzle, "--model", str(BUNDLED), "--json", *args]) == 0
    offline = json.loads(capsys.readouterr().out)
    body = {"puzzle": puzzle, "depth": depth, "breadth": breadth, "seed": seed, "aggregate": "vote"}
    online = httpx.post(f"{bundled_server.url}/v1/solve", json=body, timeout=60).raise_for_status().json()
    assert online["answer"] == offline["answer"]
    assert online["iterations"] == offline["iterations"]
    assert online["iterations_to_convergence"] == offline["iterations_to_convergence"]
    assert online["status"] == offline["status"]
    assert len(set(offline["iterations"])) > 1  # the trajectories really differ: the seeds matter
