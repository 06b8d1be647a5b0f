"""The bundled models served on a GPU, end to end: ``eqr serve`` and an ``eqr worker`` on ``--device cuda``.

These run only where CUDA is (``scripts/gpu-check`` runs them on a lent GPU; on a CPU-only machine
they are skipped, and the kernels they drive are checked under Triton's interpreter by
tests/kernels). ``EQR_TEST_DEVICE=cpu`` points them at a second CPU server instead, which is how
``scripts/gpu-check --dry-run`` keeps them (and itself) from rotting in CI. Each compares the GPU's
answers with a CPU server's for the same seeded requests:

- a puzzle a CPU trajectory solves has one right answer, so the GPU must give that same answer
  (its floating-point path differs: Triton kernels in CUDA graphs against the CPU fast step, so
  iteration counts may differ by a little, answers to solved puzzles may not);
- the same seeded request on the GPU gives the same answer and iteration counts whether it runs
  alone or batched with other work (counter-based noise; CUDA-graph buckets pad rows that never
  leak into live ones).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch

from tests.e2e.redis_cluster import cluster
from tests.live_server import LiveServer, serve

ROOT = Path(__file__).resolve().parents[2]
SUDOKU, MAZE = ROOT / "models" / "sudoku-small", ROOT / "models" / "maze-small"
README_SUDOKU = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."
TIMEOUT = 120
DEVICE = os.environ.get("EQR_TEST_DEVICE", "cuda")
STEP = {"cuda": "GraphStep", "cpu": "CpuStep"}  # the step each device's engines must run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        DEVICE == "cuda" and not torch.cuda.is_available(), reason="CUDA only: scripts/gpu-check runs these on a GPU"
    ),
]


def sudoku_requests(count: int) -> list[dict]:
    """Seeded requests for easy and hard puzzles of the bundled sets (breadth 4, vote)."""
    lines = (ROOT / "benchmarks" / "puzzles" / "easy50.csv").read_text().split()[: count // 2]
    lines += (ROOT / "benchmarks" / "puzzles" / "top95.csv").read_text().split()[: count - len(lines)]
    puzzles = [line.split(",")[0] for line in lines]
    return [
        {"model": "sudoku-small", "puzzle": p, "depth": 64, "breadth": 4, "aggregate": "vote", "seed": i}
        for i, p in enumerate(puzzles)
    ]


def maze_requests(count: int) -> list[dict]:
    lines = (ROOT / "evalsets" / "maze" / "maze11-1000.jsonl").read_text().splitlines()[:count]
    return [
        {"model": "maze-small", "puzzle": json.loads(line)["puzzle"], "depth": 64, "seed": i}
        for i, line in enumerate(lines)
    ]


def solve_all(server: LiveServer, bodies: list[dict], concurrency: int = 8) -> list[dict]:
    """Post every body at once (``concurrency`` in flight); a failed request fails with the server's log."""

    def solve(client: httpx.Client, body: dict) -> dict:
        response = client.post("/v1/solve", json=body)
        assert response.status_code == 200, f"{response.text}\n{server.log_path.read_text()[-6000:]}"
        return response.json()

    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client, ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda body: solve(client, body), bodies))


def assert_gpu_path(log: str) -> None:
    """The server's log says its engines step on the device under test (CUDA graphs on a GPU), and no
    capture fell back to the eager step."""
    assert f"on {DEVICE}, step {STEP[DEVICE]}" in log, log
    assert "CUDA graph step unavailable" not in log, log


@pytest.fixture(scope="module")
def cpu_server(tmp_path_factory):
    with serve([SUDOKU, MAZE], "--slots", "16", log_dir=tmp_path_factory.mktemp("cpu")) as server:
        yield server


@pytest.fixture(scope="module")
def device_server(tmp_path_factory):
    env = {"EQR_DEVICE": DEVICE, "EQR_LOG_LEVEL": "info"}  # info: the log names each engine's step
    with serve([SUDOKU, MAZE], "--slots", "64", log_dir=tmp_path_factory.mktemp(DEVICE), env=env) as server:
        yield server


def test_the_gpu_answers_what_the_cpu_solves(cpu_server, device_server) -> None:
    bodies = sudoku_requests(24) + maze_requests(24)
    on_cpu, on_gpu = solve_all(cpu_server, bodies), solve_all(device_server, bodies)
    solved = [i for i, r in enumerate(on_cpu) if r["valid"]]
    assert len(solved) >= len(bodies) // 2, "the CPU server should solve most of these"
    differ = [bodies[i]["puzzle"] for i in solved if on_gpu[i]["answer"] != on_cpu[i]["answer"]]
    assert not differ, f"{len(differ)} solved puzzles answered differently on the GPU: {differ[:3]}"
    assert sum(bool(r["valid"]) for r in on_gpu) >= len(solved)
    assert_gpu_path(device_server.log_path.read_text())


def test_a_seeded_request_is_the_same_alone_and_batched(device_server) -> None:
    body = {"model": "sudoku-small", "puzzle": README_SUDOKU, "depth": 64, "breadth": 8, "seed": 11}
    alone = solve_all(device_server, [body])[0]
    crowd = [*sudoku_requests(15), body, *maze_requests(16)]  # other work fills other rows and buckets
    batched = solve_all(device_server, crowd, concurrency=32)[15]
    assert (batched["answer"], batched["iterations"]) == (alone["answer"], alone["iterations"])
    assert alone["valid"]


def test_a_redis_worker_on_cuda_answers_as_the_cpu_server(tmp_path, monkeypatch, cpu_server) -> None:
    monkeypatch.setenv("EQR_DEVICE", DEVICE)  # the worker's slot pool and model (the API node loads none)
    body = {"puzzle": README_SUDOKU, "depth": 64, "breadth": 4, "seed": 5}
    expected = solve_all(cpu_server, [{**body, "model": "sudoku-small"}])[0]
    with cluster(tmp_path, SUDOKU, ["gpu0"], persistent=False) as c:
        assert c.api is not None
        got = httpx.post(f"{c.api.url}/v1/solve", json=body, timeout=TIMEOUT).raise_for_status().json()
        assert_gpu_path(c.workers["gpu0"].log())
    assert got["valid"] and got["answer"] == expected["answer"]
