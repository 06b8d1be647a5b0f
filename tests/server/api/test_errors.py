"""Every client mistake gets the one error shape with the right status, field and cells; nothing leaks."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI

from eqr.model.tasks.sudoku import parse_puzzle, to_grid
from eqr.server.api import create_app
from tests.server.api.conftest import PUZZLE, make_settings, serving

SHAPE = {"code", "message", "field", "cells"}


def error_of(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == SHAPE
    return body["error"]


def with_value(row: int, col: int, value: object) -> list:
    grid: list = to_grid(parse_puzzle(PUZZLE))
    grid[row][col] = value
    return grid


@pytest.mark.parametrize(
    ("puzzle", "cells", "words"),
    [
        ("3" + PUZZLE[1:], [[0, 0], [0, 2]], "conflicting givens: r1c1 and r1c3"),
        (PUZZLE[:40] + "x" + PUZZLE[41:], [[4, 4]], "bad character 'x' at position 40 (r5c5)"),
        (PUZZLE[:80], None, "must have 81 cells, got 80"),
        (with_value(2, 7, 10), [[2, 7]], "bad value 10 at r3c8"),
        (with_value(8, 0, "5"), [[8, 0]], "bad value '5' at r9c1"),
        (to_grid(parse_puzzle(PUZZLE))[:8], None, "list of 9 rows"),
        (12345, None, "81-character string or a 9x9 list"),
    ],
    ids=["conflict", "bad-char", "short", "grid-value", "grid-string", "grid-rows", "number"],
)
async def test_bad_puzzle_is_422_with_the_cells(client: httpx.AsyncClient, puzzle, cells, words):
    error = error_of(await client.post("/v1/solve", json={"puzzle": puzzle}), 422)
    assert error["code"] == "invalid_puzzle" and error["field"] == "puzzle"
    assert error["cells"] == cells and words in error["message"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"depth": 0}, "depth"),
        ({"depth": 65}, "depth"),  # over the server's cap: refused by the engine, same shape
        ({"breadth": 9}, "breadth"),  # over the cap too
        ({"breadth": "wide"}, "breadth"),
        ({"aggregate": "mode"}, "aggregate"),
        ({"halt": "never"}, "halt"),
        ({"breadth": 2, "quorum": 3}, "quorum"),
        ({"noise": -1}, "noise"),
        ({"seed": -5}, "seed"),
        ({"timeout_ms": 0}, "timeout_ms"),
        ({"stream_every": 0}, "stream_every"),
        ({"colour": "blue"}, "colour"),
        ({"stream": "maybe"}, "stream"),
    ],
)
async def test_bad_parameter_is_422_naming_the_field(client: httpx.AsyncClient, params, field):
    error = error_of(await client.post("/v1/solve", json={"puzzle": PUZZLE, **params}), 422)
    assert error["code"] == "invalid_request" and error["field"] == field and error["cells"] is None


async def test_missing_puzzle_and_malformed_bodies_are_422(client: httpx.AsyncClient):
    missing = error_of(await client.post("/v1/solve", json={"depth": 3}), 422)
    assert missing["field"] == "puzzle" and "required" in missing["message"].lower()
    headers = {"content-type": "application/json"}
    broken = error_of(await client.post("/v1/solve", content=b'{"puzzle": ', headers=headers), 422)
    assert broken["code"] == "invalid_request" and "not valid JSON" in broken["message"]
    nothing = error_of(await client.post("/v1/solve", headers=headers), 422)
    assert nothing["code"] == "invalid_request"
    listed = error_of(await client.post("/v1/solve", json=[PUZZLE]), 422)
    assert listed["code"] == "invalid_request"


async def test_job_endpoint_rejects_streaming_and_bad_puzzles(client: httpx.AsyncClient):
    error = error_of(await client.post("/v1/jobs", json={"puzzle": PUZZLE, "stream": True}), 422)
    assert error["field"] == "stream"
    error = error_of(await client.post("/v1/jobs", json={"puzzle": "1" * 81}), 422)
    assert error["code"] == "invalid_puzzle" and len(error["cells"]) == 81


def _app(model_dir, **settings) -> FastAPI:
    return create_app(make_settings(model_dir, **settings))


@pytest.fixture
async def small_body_client(model_dir):
    async with serving(_app(model_dir, max_body_bytes=300)) as c:
        yield c


async def test_body_over_the_limit_is_413_by_declared_length(small_body_client: httpx.AsyncClient):
    body = json.dumps({"puzzle": PUZZLE, "model": "x" * 400}).encode()
    error = error_of(await small_body_client.post("/v1/solve", content=body), 413)
    assert error["code"] == "payload_too_large" and "300 bytes" in error["message"]
    fits = await small_body_client.post("/v1/solve", json={"puzzle": PUZZLE, "depth": 1})
    assert fits.status_code == 200


async def test_body_over_the_limit_is_413_while_streaming_in(small_body_client: httpx.AsyncClient):
    async def chunks():  # no Content-Length: the limit must be enforced as bytes arrive
        yield b'{"puzzle": "' + PUZZLE.encode() + b'", '
        for _ in range(20):
            yield b'"pad": "' + b"x" * 50 + b'", '
        yield b'"depth": 1}'

    request = small_body_client.build_request("POST", "/v1/solve", content=chunks())
    assert "content-length" not in request.headers
    error = error_of(await small_body_client.send(request), 413)
    assert error["code"] == "payload_too_large"


async def test_unknown_routes_and_methods_use_the_error_shape(client: httpx.AsyncClient):
    assert error_of(await client.get("/v2/solve"), 404)["code"] == "not_found"
    assert error_of(await client.get("/v1/solve"), 405)["code"] == "method_not_allowed"
    job = error_of(await client.get("/v1/jobs/nope"), 404)
    assert job["code"] == "job_not_found" and job["field"] == "id"
    assert error_of(await client.delete("/v1/jobs/nope"), 404)["code"] == "job_not_found"
    assert error_of(await client.get("/v1/models/other"), 404)["code"] == "model_not_found"


async def test_an_unexpected_failure_is_a_bare_500(model_dir, monkeypatch: pytest.MonkeyPatch):
    app = _app(model_dir)
    async with serving(app, raise_app_exceptions=False) as client:

        async def explode(*args, **kwargs):
            raise RuntimeError("secret internal detail")

        monkeypatch.setattr(app.state.broker, "submit", explode)
        r = await client.post("/v1/solve", json={"puzzle": PUZZLE})
        error = error_of(r, 500)
        assert error["code"] == "internal_error"
        assert "secret" not in r.text and "Traceback" not in r.text and "RuntimeError" not in r.text


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_a_body_not_declared_json_is_415_naming_application_json(client: httpx.AsyncClient, content_type):
    body = json.dumps({"puzzle": PUZZLE, "depth": 1}).encode()
    headers = {"content-type": content_type} if content_type else {}
    for path in ("/v1/solve", "/v1/solve/batch", "/v1/jobs"):
        error = error_of(await client.post(path, content=body, headers=headers), 415)
        assert error["code"] == "unsupported_media_type" and "application/json" in error["message"]
        assert (content_type or "no Content-Type") in error["message"]


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/merge-patch+json"])
async def test_json_content_types_with_parameters_or_suffix_are_accepted(client: httpx.AsyncClient, content_type):
    body = json.dumps({"puzzle": PUZZLE, "depth": 1}).encode()
    assert (await client.post("/v1/solve", content=body, headers={"content-type": content_type})).status_code == 200
