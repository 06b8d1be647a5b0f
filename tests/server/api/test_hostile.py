"""Hostile input: huge bodies, deep nesting, wrong types, non-ASCII, absurd numbers.

Every one must come back quickly as a 4xx in the one error shape, never a 500 or a hang, and leave
the server serving: the whole module talks to one app, and its last test checks that this app,
after every request above, still solves.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from eqr.server.api import create_app
from tests.server.api.conftest import PUZZLE, make_settings, serving
from tests.server.api.test_errors import error_of

pytestmark = pytest.mark.asyncio(loop_scope="module")

JSON = {"content-type": "application/json"}
ENDPOINTS = ("/v1/solve", "/v1/solve/batch", "/v1/jobs")
QUICK_S = 2.0  # generous for a loaded CI machine; the real cost is milliseconds


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(model_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """One app for the whole module (its tests run in file order), so hostile requests accumulate."""
    async with serving(create_app(make_settings(model_dir))) as c:
        yield c


async def timed_post(client: httpx.AsyncClient, path: str, **kwargs) -> httpx.Response:
    start = time.perf_counter()
    r = await client.post(path, **kwargs)
    assert time.perf_counter() - start < QUICK_S, f"{path} took {time.perf_counter() - start:.1f} s"
    return r


async def test_a_ten_megabyte_body_is_413_before_it_is_read(client: httpx.AsyncClient):
    body = json.dumps({"puzzle": PUZZLE, "pad": "x" * 10_000_000}).encode()
    for path in ENDPOINTS:
        assert error_of(await timed_post(client, path, content=body, headers=JSON), 413)["code"] == "payload_too_large"
    lying = {**JSON, "content-length": str(10**12)}  # a declared length is enough to refuse
    r = await timed_post(client, "/v1/solve", content=b"{}", headers=lying)
    assert error_of(r, 413)["code"] == "payload_too_large"


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"puzzle": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"puzzle": "' + PUZZLE + '", "model": ' + '{"a": ' * 50_000 + "1" + "}" * 50_000 + "}",
        '{"puzzles": ' + "[" * 100_000,  # deep and unterminated
    ],
    ids=["lists", "in-puzzle", "objects", "unterminated"],
)
async def test_deeply_nested_json_is_422_quickly(client: httpx.AsyncClient, body: str):
    for path in ENDPOINTS:
        error = error_of(await timed_post(client, path, content=body, headers=JSON), 422)
        assert error["code"] == "invalid_request" and "JSON" in error["message"]


async def test_nesting_the_parser_accepts_is_still_just_a_bad_puzzle(client: httpx.AsyncClient):
    nested = "[" * 500 + "]" * 500
    r = await timed_post(client, "/v1/solve", content='{"puzzle": ' + nested + "}", headers=JSON)
    assert error_of(r, 422)["code"] == "invalid_puzzle"
    r = await timed_post(client, "/v1/solve/batch", content='{"puzzles": [' + nested + "]}", headers=JSON)
    assert r.status_code == 200 and r.json()["results"][0]["error"]["code"] == "invalid_puzzle"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"puzzle": PUZZLE, "depth": "5"}, "depth"),
        ({"puzzle": PUZZLE, "depth": True}, "depth"),
        ({"puzzle": PUZZLE, "depth": 2.5}, "depth"),
        ({"puzzle": PUZZLE, "depth": [4]}, "depth"),
        ({"puzzle": PUZZLE, "breadth": None}, "breadth"),
        ({"puzzle": PUZZLE, "noise": "0.1"}, "noise"),
        ({"puzzle": PUZZLE, "stream": 1}, "stream"),
        ({"puzzle": PUZZLE, "model": 7}, "model"),
        ({"puzzle": PUZZLE, "aggregate": ["vote"]}, "aggregate"),
        ({"puzzles": PUZZLE}, "puzzles"),  # a string where a list belongs (batch only)
    ],
)
async def test_wrong_types_are_422_naming_the_field(client: httpx.AsyncClient, body: dict, field: str):
    path = "/v1/solve/batch" if "puzzles" in body else "/v1/solve"
    error = error_of(await timed_post(client, path, json=body), 422)
    assert error["code"] == "invalid_request" and error["field"] == field


@pytest.mark.parametrize("puzzle", [None, True, 81, 3.5, {"cells": PUZZLE}, [], [[None] * 9] * 9, [["1"] * 9] * 9])
async def test_puzzles_of_the_wrong_type_are_422(client: httpx.AsyncClient, puzzle: object):
    error = error_of(await timed_post(client, "/v1/solve", json={"puzzle": puzzle}), 422)
    assert error["code"] == "invalid_puzzle" and error["field"] == "puzzle"


@pytest.mark.parametrize(
    "body", [b"[1, 2]", b'"puzzle"', b"null", b"\xff\xfe{}", b'{"puzzle": "\xc3\x28"}', b"\x00" * 64]
)
async def test_bodies_that_are_not_a_json_object_are_422(client: httpx.AsyncClient, body: bytes):
    for path in ENDPOINTS:
        assert error_of(await timed_post(client, path, content=body, headers=JSON), 422)["code"] == "invalid_request"


async def test_a_body_that_is_not_json_at_all_is_415(client: httpx.AsyncClient):
    r = await timed_post(client, "/v1/solve", content=PUZZLE.encode(), headers={"content-type": "text/plain"})
    assert error_of(r, 415)["code"] == "unsupported_media_type"


@pytest.mark.parametrize(
    "puzzle",
    ["１２３" + PUZZLE[3:], "é" * 81, "🧩" * 81, "\u202e" + PUZZLE[1:], PUZZLE[:40] + "\x00" + PUZZLE[41:], "٣" * 81],
    ids=["fullwidth", "accents", "emoji", "rtl-override", "nul", "arabic-digits"],
)
async def test_non_ascii_puzzles_are_422_with_the_cell(client: httpx.AsyncClient, puzzle: str):
    error = error_of(await timed_post(client, "/v1/solve", json={"puzzle": puzzle}), 422)
    assert error["code"] == "invalid_puzzle" and error["cells"]


async def test_non_ascii_names_come_back_intact_and_long_ones_are_refused(client: httpx.AsyncClient):
    name = "модель-🧩-<script>"
    error = error_of(await timed_post(client, "/v1/solve", json={"puzzle": PUZZLE, "model": name}), 404)
    assert error["code"] == "model_not_found" and name in error["message"]
    r = await client.get("/v1/jobs/%F0%9F%A7%A9%00")
    assert error_of(r, 404)["code"] == "job_not_found"
    too_long = error_of(await timed_post(client, "/v1/solve", json={"puzzle": PUZZLE, "model": "m" * 5000}), 422)
    assert too_long["field"] == "model" and "m" * 300 not in too_long["message"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"depth": -1}, "depth"),
        ({"depth": -(2**63)}, "depth"),
        ({"depth": 10**30}, "depth"),
        ({"depth": 1_000_000}, "depth"),  # within the schema, over this server's cap
        ({"breadth": -3}, "breadth"),
        ({"breadth": 10**9}, "breadth"),
        ({"timeout_ms": -1}, "timeout_ms"),
        ({"timeout_ms": 10**18}, "timeout_ms"),
        ({"timeout_ms": 1e308}, "timeout_ms"),
        ({"seed": 2**64}, "seed"),
        ({"priority": -(10**9)}, "priority"),
        ({"stream_every": 10**12}, "stream_every"),
        ({"noise": 1e300}, "noise"),
        ({"quorum": 0}, "quorum"),
    ],
)
async def test_negative_and_enormous_numbers_are_422(client: httpx.AsyncClient, params: dict, field: str):
    for path, body in [("/v1/solve", {"puzzle": PUZZLE}), ("/v1/solve/batch", {"puzzles": [PUZZLE]})]:
        error = error_of(await timed_post(client, path, json={**body, **params}), 422)
        assert error["code"] == "invalid_request" and error["field"] == field


async def test_non_finite_numbers_are_422_saying_so(client: httpx.AsyncClient):
    """NaN, infinities and a literal too large for a double (1e400 reads as infinity) are not numbers a
    field can take: the message says the number is not finite, not that it is above the field's maximum."""
    for literal in ("NaN", "Infinity", "-Infinity", "1e999", "1e400"):
        content = '{"puzzle": "' + PUZZLE + '", "noise": ' + literal + "}"
        error = error_of(await timed_post(client, "/v1/solve", content=content, headers=JSON), 422)
        assert error["field"] == "noise" and "finite" in error["message"], error
        assert "less than" not in error["message"], error


@pytest.mark.parametrize("field", ["budget", "depth", "breadth"])
async def test_a_capped_field_names_one_limit_whatever_the_value(client: httpx.AsyncClient, field: str):
    """A field an engine cap bounds has one limit, the server's, and one message for every value above it
    (``budget: 1000000`` and ``1000001`` named different limits: the schema's and the cap)."""
    cap = (await client.get("/v1/models")).json()["models"][0]["caps"][field]
    messages = set()
    for value in (cap + 1, 1_000_000, 1_000_001, 10**30):
        error = error_of(await timed_post(client, "/v1/solve", json={"puzzle": PUZZLE, field: value}), 422)
        assert error["field"] == field
        messages.add(error["message"].rsplit(", got", 1)[0])
    assert messages == {f"{field} must be between 1 and {cap}"}


async def test_the_server_still_serves_after_all_that(client: httpx.AsyncClient, request: pytest.FixtureRequest):
    ran = [item.name for item in request.session.items if item.module is request.module]
    assert ran.index(request.node.name) == len(ran) - 1  # the last of the module: after all that, on one app
    await client.post("/v1/solve", content="[" * 100_000, headers=JSON)
    r = await client.post("/v1/solve", json={"puzzle": PUZZLE, "depth": 1})
    assert r.status_code == 200 and r.json()["status"] == "max_iterations"
    assert (await client.get("/readyz")).status_code == 200
