"""One server, several models: each request reaches its model's engine, answered in its task's form.

The app serves a tiny Sudoku model (the default: listed first) and a tiny 5×5 maze model, through the
same lifespan ``eqr serve --model A --model B`` runs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from eqr.server.api import create_app
from tests.live_server import MAZE, save_tiny_maze_model
from tests.server.api.conftest import MODEL_NAME, PUZZLE, make_settings, serving

MAZE_NAME = "maze-tiny"


@pytest.fixture(scope="module")
def maze_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_maze_model(tmp_path_factory.mktemp("maze") / MAZE_NAME)


@pytest.fixture
async def both(model_dir: Path, maze_dir: Path):
    app = create_app(make_settings([model_dir, maze_dir]))
    async with serving(app) as client:
        yield client


async def test_models_lists_each_with_its_task_board_and_caps(both: httpx.AsyncClient):
    models = (await both.get("/v1/models")).json()["models"]
    assert [(m["name"], m["task"]) for m in models] == [(MODEL_NAME, "sudoku"), (MAZE_NAME, "maze")]
    maze = models[1]
    assert maze["board"] == {"kind": "maze", "rows": 5, "cols": 5, "charset": "# SGo"}
    assert maze["caps"]["slots"] == 8 and maze["defaults"]["depth"] == 6 and maze["arch"]["seq_len"] == 25
    assert (await both.get(f"/v1/models/{MAZE_NAME}")).json() == maze
    missing = await both.get("/v1/models/chess")
    assert missing.status_code == 404 and f"'{MODEL_NAME}', '{MAZE_NAME}'" in missing.json()["error"]["message"]


async def test_a_request_reaches_the_model_it_names_and_gets_its_form_back(both: httpx.AsyncClient):
    rows = (await both.post("/v1/solve", json={"model": MAZE_NAME, "puzzle": MAZE, "seed": 1})).json()
    assert rows["model"] == MAZE_NAME and rows["grid"] is None and isinstance(rows["valid"], bool)
    assert isinstance(rows["answer"], list) and [len(r) for r in rows["answer"]] == [5] * 5
    text = (await both.post("/v1/solve", json={"model": MAZE_NAME, "puzzle": "\n".join(MAZE), "seed": 1})).json()
    assert text["answer"] == "\n".join(rows["answer"])  # same puzzle and seed: same answer, in the other form
    default = (await both.post("/v1/solve", json={"puzzle": PUZZLE})).json()
    assert default["model"] == MODEL_NAME and len(default["answer"]) == 81 and len(default["grid"]) == 9


async def test_puzzles_are_read_by_the_named_models_task(both: httpx.AsyncClient):
    no_goal = [row.replace("G", " ") for row in MAZE]
    r = await both.post("/v1/solve", json={"model": MAZE_NAME, "puzzle": no_goal})
    error = r.json()["error"]
    assert r.status_code == 422 and error["code"] == "invalid_puzzle" and "exactly one goal 'G'" in error["message"]
    r = await both.post("/v1/solve", json={"model": MAZE_NAME, "puzzle": PUZZLE})  # a Sudoku for the maze model
    assert r.status_code == 422 and r.json()["error"]["field"] == "puzzle"
    r = await both.post("/v1/solve", json={"model": "chess", "puzzle": PUZZLE})
    assert r.status_code == 404 and r.json()["error"]["field"] == "model"


async def test_streams_carry_the_maze_board_in_the_puzzles_form(both: httpx.AsyncClient):
    body = {"model": MAZE_NAME, "puzzle": "\n".join(MAZE), "stream": True, "depth": 4}
    text = (await both.post("/v1/solve", json=body)).text
    boards = [line for line in text.splitlines() if line.startswith("data:") and '"board"' in line]
    assert boards and all('"board":"' in line and "\\n" in line for line in boards)  # one string, rows on lines


async def test_the_default_model_is_the_servers_setting(model_dir: Path, maze_dir: Path):
    """``--default-model`` picks the model of a request naming none (the same setting as ``eqr api``'s);
    it is listed first and named as ``default``, and /readyz and /v1/models count this process as its worker."""
    app = create_app(make_settings([model_dir, maze_dir], default_model=MAZE_NAME))
    async with serving(app) as client:
        listed = (await client.get("/v1/models")).json()
        assert listed["default"] == MAZE_NAME
        assert [(m["name"], m["workers"]) for m in listed["models"]] == [(MAZE_NAME, 1), (MODEL_NAME, 1)]
        default = (await client.post("/v1/solve", json={"puzzle": MAZE, "depth": 2})).json()
        assert default["model"] == MAZE_NAME and isinstance(default["answer"], list)
        assert (await client.get("/readyz")).json()["models"] == {MAZE_NAME: 1, MODEL_NAME: 1}


async def test_metrics_are_labelled_by_model(both: httpx.AsyncClient):
    await both.post("/v1/solve", json={"model": MAZE_NAME, "puzzle": MAZE})
    await both.post("/v1/solve", json={"puzzle": PUZZLE})
    text = (await both.get("/metrics")).text
    for name, task in ((MODEL_NAME, "sudoku"), (MAZE_NAME, "maze")):
        assert f'eqr_requests_total{{model="{name}",status="max_iterations"}} 1.0' in text
        count = f'eqr_iterations_to_convergence_count{{model="{name}",status="max_iterations",task="{task}"}} 1.0'
        assert count in text
        assert f'eqr_slot_capacity{{model="{name}"}} 8.0' in text


async def test_one_models_load_does_not_starve_another(model_dir: Path, maze_dir: Path):
    """A queue of long Sudoku requests holds the Sudoku engine's slots; a maze request still runs at once,
    on its own engine: it finishes while most of the Sudoku work is still waiting."""
    app = create_app(make_settings([model_dir, maze_dir], max_depth=256, max_queue=4096))
    async with serving(app) as client:
        flood = [
            asyncio.create_task(client.post("/v1/solve", json={"puzzle": PUZZLE, "depth": 256, "breadth": 8}))
            for _ in range(16)
        ]  # 16 × 8 trajectories × 256 iterations on 8 slots: 4096 engine steps
        while app.state.broker.stats().queue_depth < 100:
            await asyncio.sleep(0.01)
        r = await client.post("/v1/solve", json={"model": MAZE_NAME, "puzzle": MAZE, "depth": 6})
        sudoku = app.state.broker.engine_stats()[MODEL_NAME]
        assert r.status_code == 200 and r.json()["iterations"] == [6]
        assert sudoku.in_flight >= 12 and sudoku.queue_depth >= 64  # the flood is far from done
        for task in flood:
            task.cancel()
