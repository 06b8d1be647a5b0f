"""``POST /v1/solve`` (JSON and SSE) and ``POST /v1/solve/batch`` on the real engine."""

from __future__ import annotations

from pathlib import Path

import httpx

from eqr.model.checkpoint import load_model
from eqr.model.tasks.sudoku import SudokuTask, parse_puzzle, to_grid
from eqr.offline.solve import solve_offline
from eqr.server.engine import SolveParams
from tests.server.api.conftest import MODEL_NAME, PUZZLE
from tests.server.sse import parse_sse

BAD_CHAR = "x" + PUZZLE[1:]
CONFLICT = "3" + PUZZLE[1:]  # r1c1 and r1c3 both 3


async def test_solve_returns_answer_grid_status_and_timings(client: httpx.AsyncClient):
    r = await client.post("/v1/solve", json={"puzzle": PUZZLE, "seed": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == MODEL_NAME and len(body["id"]) == 32
    assert body["status"] == "max_iterations"  # tolerance 0: the model's default depth (6) runs out
    assert body["iterations"] == [6] and body["iterations_to_convergence"] is None
    assert len(body["answer"]) == 81 and [len(row) for row in body["grid"]] == [9] * 9
    assert body["answer"] == "".join(str(d) if d else "." for row in body["grid"] for d in row)
    assert isinstance(body["valid"], bool) and body["agreement"] == 1.0 and body["seed"] == 7
    assert body["timings"]["queued_ms"] >= 0 and body["timings"]["compute_ms"] > 0


async def test_grid_and_string_puzzles_give_the_same_seeded_answer(client: httpx.AsyncClient):
    grid = to_grid(parse_puzzle(PUZZLE))
    answers = [
        (await client.post("/v1/solve", json={"puzzle": puzzle, "seed": 11, "depth": 4})).json()["answer"]
        for puzzle in (PUZZLE, grid, PUZZLE.replace(".", "0"))
    ]
    assert answers[0] == answers[1] == answers[2]


async def test_breadth_reports_every_trajectory(client: httpx.AsyncClient, model_dir: Path):
    body = {"puzzle": PUZZLE, "breadth": 3, "aggregate": "vote", "depth": 5, "seed": 4}
    r = await client.post("/v1/solve", json=body)
    got = r.json()
    assert r.status_code == 200 and got["iterations"] == [5, 5, 5]
    # the same seed names the same trajectories offline: their agreement is the server's
    model, meta = load_model(model_dir)
    sudoku = SudokuTask()
    params = SolveParams(depth=5, breadth=3, aggregate="vote", seed=4)
    offline = solve_offline(model, sudoku, meta, sudoku.encode(PUZZLE), params)
    assert got["agreement"] == offline.agreement and got["answer"] == sudoku.board(offline.answer)
    assert offline.iterations == got["iterations"]


async def test_stream_sends_iteration_events_then_the_result(client: httpx.AsyncClient):
    r = await client.post("/v1/solve", json={"puzzle": PUZZLE, "stream": True, "depth": 6, "stream_every": 2})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert "content-length" not in r.headers
    events = parse_sse(r.text.splitlines())
    # every 2nd iteration while the trajectory runs, then its last one (6) as it ends, then the result
    assert [name for name, _ in events] == ["iteration", "iteration", "iteration", "result"]
    iterations = [data for name, data in events if name == "iteration"]
    assert [(e["iteration"], e["ended"]) for e in iterations] == [(2, None), (4, None), (6, "depth")]
    result = events[-1][1]
    assert all(e["id"] == result["id"] and len(e["board"]) == 81 for e in iterations)
    assert [e["live_trajectories"] for e in iterations] == [1, 1, 0] and all(e["residual"] >= 0 for e in iterations)
    assert iterations[-1]["board"] == result["answer"]  # the trajectory's last board is the answer
    assert result["status"] == "max_iterations" and result["iterations"] == [6]


async def test_model_field_must_name_the_served_model(client: httpx.AsyncClient):
    ok = await client.post("/v1/solve", json={"puzzle": PUZZLE, "model": MODEL_NAME, "depth": 1})
    assert ok.status_code == 200
    r = await client.post("/v1/solve", json={"puzzle": PUZZLE, "model": "sudoku-huge"})
    assert r.status_code == 404
    assert r.json()["error"] == {
        "code": "model_not_found",
        "message": f"model 'sudoku-huge' is not served here; this server serves '{MODEL_NAME}'",
        "field": "model",
        "cells": None,
    }


async def test_batch_reports_bad_items_without_failing_the_others(client: httpx.AsyncClient):
    puzzles = [PUZZLE, BAD_CHAR, to_grid(parse_puzzle(PUZZLE)), CONFLICT, "123"]
    r = await client.post("/v1/solve/batch", json={"puzzles": puzzles, "seed": 5, "depth": 3})
    assert r.status_code == 200, r.text
    items = r.json()["results"]
    assert [item["index"] for item in items] == [0, 1, 2, 3, 4]
    assert [item["result"] is not None for item in items] == [True, False, True, False, False]
    assert items[0]["result"]["answer"] == items[2]["result"]["answer"]  # same puzzle, same seed
    assert items[1]["error"] == {
        "code": "invalid_puzzle",
        "message": items[1]["error"]["message"],
        "field": "puzzles.1",
        "cells": [[0, 0]],
    }
    assert items[3]["error"]["cells"] == [[0, 0], [0, 2]] and items[3]["error"]["field"] == "puzzles.3"
    assert items[4]["error"]["code"] == "invalid_puzzle" and items[4]["error"]["cells"] is None


async def test_batch_parameter_errors_fail_the_whole_call(client: httpx.AsyncClient):
    over_cap = await client.post("/v1/solve/batch", json={"puzzles": [PUZZLE, PUZZLE], "depth": 65})
    assert over_cap.status_code == 422 and over_cap.json()["error"]["field"] == "depth"
    empty = await client.post("/v1/solve/batch", json={"puzzles": []})
    assert empty.status_code == 422 and empty.json()["error"]["field"] == "puzzles"


async def test_verified_mode_restarts_within_the_budget_and_keeps_the_givens(client: httpx.AsyncClient):
    """The tiny random model never answers a valid grid: verified mode restarts until the budget is spent."""
    body = {"puzzle": PUZZLE, "verify": True, "budget": 20, "depth": 6, "seed": 3}
    got = (await client.post("/v1/solve", json=body)).json()
    assert got["verified"] is False and got["valid"] is False and sum(got["iterations"]) == 20
    assert got["restarts"] == len(got["iterations"]) - 1 >= 2
    assert all(a == p for a, p in zip(got["answer"], PUZZLE, strict=True) if p != ".")  # givens kept
    plain = (await client.post("/v1/solve", json={"puzzle": PUZZLE, "depth": 6, "seed": 3})).json()
    assert plain["verified"] is None and plain["restarts"] == 0 and plain["iterations"] == [6]
    for bad, field in (({"verify": "yes"}, "verify"), ({"budget": 0}, "budget")):
        r = await client.post("/v1/solve", json={"puzzle": PUZZLE, **bad})
        assert r.status_code == 422 and r.json()["error"]["field"] == field
    metrics = (await client.get("/metrics")).text
    assert f'eqr_restarts_total{{model="{MODEL_NAME}"}} {got["restarts"]}.0' in metrics


async def test_the_paper_preset_fills_what_a_request_leaves_out(paper_model_dir: Path):
    """On a model folder that takes it (``inference.presets``); /v1/models lists the presets of each model."""
    from eqr.server.api import create_app
    from tests.server.api.conftest import make_settings, serving

    async with serving(create_app(make_settings(paper_model_dir, max_breadth=128, max_queue=512))) as client:
        assert (await client.get("/v1/models")).json()["models"][0]["presets"] == ["paper"]
        paper = (await client.post("/v1/solve", json={"puzzle": PUZZLE, "preset": "paper", "depth": 2})).json()
        assert len(paper["iterations"]) == 128 and max(paper["iterations"]) <= 2  # its breadth, the request's depth
        mine = (await client.post("/v1/solve", json={"puzzle": PUZZLE, "preset": "paper", "breadth": 3})).json()
        assert len(mine["iterations"]) == 3 and max(mine["iterations"]) <= 64
        r = await client.post("/v1/solve", json={"puzzle": PUZZLE, "preset": "fast"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "preset"


async def test_a_preset_the_model_does_not_take_is_a_422_naming_it_and_the_model(client: httpx.AsyncClient):
    """The bundled Sudoku model got 0 of 30 top95 puzzles with the paper's noise 0.5: a folder that does not
    list a preset refuses it, whatever else the request sets."""
    assert (await client.get("/v1/models")).json()["models"][0]["presets"] == []
    for body in ({"preset": "paper"}, {"preset": "paper", "noise": 0.01, "breadth": 2}):
        r = await client.post("/v1/solve", json={"puzzle": PUZZLE, **body})
        error = r.json()["error"]
        assert r.status_code == 422 and error["field"] == "preset"
        assert "'paper'" in error["message"] and f"'{MODEL_NAME}'" in error["message"]


async def test_breadth_on_demand_over_http(client: httpx.AsyncClient):
    """The tiny model never converges (tol 0): its two first trajectories cannot agree on a moving board,
    so trajectories join one by one up to the cap; a bad mode is a 422 naming the field."""
    body = {"puzzle": PUZZLE, "breadth": 4, "breadth_mode": "on_demand", "depth": 3, "seed": 2}
    got = (await client.post("/v1/solve", json=body)).json()
    assert 2 <= len(got["iterations"]) <= 4 and all(n == 3 for n in got["iterations"])
    r = await client.post("/v1/solve", json={**body, "breadth_mode": "lazy"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "breadth_mode"


async def test_verified_renoise_restarts_over_http(client: httpx.AsyncClient):
    """A verified request with ``restart: renoise`` runs its restarts within the budget (test_request_fields
    shows the value reaching the plan); a bad value is a 422 naming the field and the values it takes."""
    body = {"puzzle": PUZZLE, "verify": True, "restart": "renoise", "depth": 2, "budget": 6, "seed": 3}
    got = (await client.post("/v1/solve", json=body)).json()
    assert got["restarts"] == 2 and got["iterations"] == [2, 2, 2] and got["verified"] is False
    r = await client.post("/v1/solve", json={**body, "restart": "local"})
    error = r.json()["error"]
    assert r.status_code == 422 and error["field"] == "restart"
    assert "full" in error["message"] and "renoise" in error["message"]
