"""Admission and lifecycle under controlled timing: 429, 503 (not ready, stalled, draining), disconnects.

The engine is real; only the model's steps are gated by the test (see ``GatedModel``).
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi import FastAPI

from eqr.server.api import create_app, drain
from eqr.server.engine import Status
from tests.server.api.conftest import PUZZLE, Gated, make_settings, until
from tests.server.sse import parse_sse


def solve(gated: Gated, **params) -> asyncio.Task:
    return asyncio.ensure_future(gated.client.post("/v1/solve", json={"puzzle": PUZZLE, **params}))


@pytest.mark.parametrize("gated_config", [{"engine": {"slots": 1, "max_queue": 2}}], indirect=True)
async def test_full_queue_is_429_with_retry_after(gated: Gated):
    held = [solve(gated, depth=2), solve(gated, depth=2)]  # one in the slot, one queued: the queue is full
    await until(lambda: gated.in_flight() == 2)
    r = await gated.client.post("/v1/solve", json={"puzzle": PUZZLE})
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "queue_full" and int(r.headers["Retry-After"]) >= 1
    gated.model.open()
    assert [t.status_code for t in await asyncio.gather(*held)] == [200, 200]


@pytest.mark.parametrize("gated_config", [{"engine": {"slots": 1, "max_queue": 2}}], indirect=True)
async def test_full_queue_fails_only_the_batch_items_that_did_not_fit(gated: Gated):
    batch = asyncio.ensure_future(gated.client.post("/v1/solve/batch", json={"puzzles": [PUZZLE] * 3, "depth": 2}))
    await until(lambda: gated.in_flight() == 2)
    gated.model.open()
    items = (await batch).json()["results"]
    assert [item["result"]["status"] for item in items[:2]] == ["max_iterations"] * 2
    assert items[2]["error"]["code"] == "queue_full" and items[2]["error"]["field"] == "puzzles.2"


async def test_not_ready_before_the_model_is_loaded(model_dir):
    app = create_app(make_settings(model_dir))  # lifespan not run: no broker yet
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://eqr.test") as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"
        r = await client.post("/v1/solve", json={"puzzle": PUZZLE})
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready" and r.headers["Retry-After"]
        assert (await client.get("/healthz")).status_code == 200  # alive all the same


@pytest.mark.parametrize("gated_config", [{"broker": {"stall_timeout_s": 0.2}}], indirect=True)
async def test_not_ready_while_the_engine_makes_no_progress(gated: Gated):
    assert (await gated.client.get("/readyz")).status_code == 200
    held = solve(gated, depth=2)
    await until(lambda: gated.in_flight() == 1)
    await asyncio.sleep(0.3)  # no step completes: the gate is shut
    r = await gated.client.get("/readyz")
    assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
    assert "no step" in r.json()["error"]["message"]
    gated.model.open()
    assert (await held).status_code == 200
    assert (await gated.client.get("/readyz")).status_code == 200


async def test_drain_refuses_new_work_and_lets_running_work_finish(gated: Gated):
    held = solve(gated, depth=3)
    await until(lambda: gated.in_flight() == 1)
    draining = asyncio.ensure_future(drain(gated.app))
    await until(lambda: gated.broker.readiness().code == "draining")

    ready = await gated.client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["error"]["code"] == "draining"
    for path, body in [("/v1/solve", {"puzzle": PUZZLE}), ("/v1/jobs", {"puzzle": PUZZLE})]:
        r = await gated.client.post(path, json=body)
        assert r.status_code == 503 and r.json()["error"]["code"] == "draining"
    assert not draining.done()

    gated.model.open()
    r = await held
    assert r.status_code == 200 and r.json()["status"] == "max_iterations"
    assert await draining is True


@pytest.mark.parametrize("gated_config", [{"settings": {"drain_timeout_s": 0.1}}], indirect=True)
async def test_drain_is_bounded_by_its_timeout(gated: Gated):
    held = solve(gated, depth=3)
    await until(lambda: gated.in_flight() == 1)
    assert await drain(gated.app) is False
    gated.model.open()
    assert (await held).status_code == 200


async def call_then_disconnect(app: FastAPI, body: dict, leave: asyncio.Event) -> list[dict]:
    """Call the app over raw ASGI; the client goes away when ``leave`` is set. Returns what was sent."""
    pending = [{"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        if pending:
            return pending.pop()
        await leave.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/solve",
        "raw_path": b"/v1/solve",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"eqr.test"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("eqr.test", 80),
    }
    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_a_client_that_disconnects_cancels_its_work(gated: Gated, stream: bool):
    leave = asyncio.Event()
    call = asyncio.ensure_future(
        call_then_disconnect(gated.app, {"puzzle": PUZZLE, "depth": 64, "breadth": 2, "stream": stream}, leave)
    )
    await until(lambda: gated.in_flight() == 1)
    gated.model.allow(1)  # one iteration, then the client leaves
    leave.set()
    # steps until the cancel lands: the call may return (499) before the engine has noticed it
    await gated.model.drip(lambda: call.done() and len(gated.finished.results) == 1)
    sent = await call
    result = gated.finished.results[0]
    assert result.status is Status.CANCELLED and max(result.iterations) < 64
    await until(lambda: gated.broker.stats().live_slots == 0)
    if stream:
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body").decode()
        assert sent[0]["status"] == 200 and all(name == "iteration" for name, _ in parse_sse(body.splitlines()))
    else:
        assert sent[0]["status"] == 499


async def test_a_failing_model_step_is_a_500_or_an_sse_error_event(gated: Gated):
    gated.model.fail = True
    gated.model.open()
    r = await gated.client.post("/v1/solve", json={"puzzle": PUZZLE})
    assert r.status_code == 500
    error = r.json()["error"]
    assert error["code"] == "engine_error" and "injected model failure" in error["message"]
    r = await gated.client.post("/v1/solve", json={"puzzle": PUZZLE, "stream": True})
    assert r.status_code == 200
    ((name, data),) = parse_sse(r.text.splitlines())
    assert name == "error" and data["error"]["code"] == "engine_error"
    gated.model.fail = False  # the engine carries on serving
    assert (await gated.client.post("/v1/solve", json={"puzzle": PUZZLE, "depth": 1})).status_code == 200
    assert (await gated.client.get("/readyz")).status_code == 200


@pytest.mark.parametrize("gated_config", [{"engine": {"slots": 1}}], indirect=True)
async def test_a_failing_step_fails_only_the_requests_in_the_slots(gated: Gated):
    running = solve(gated, depth=2)
    await until(lambda: gated.in_flight() == 1)  # first in the engine, so first in the slot
    queued = solve(gated, depth=2)
    await until(lambda: gated.in_flight() == 2)
    gated.model.fail = True
    gated.model.allow(1)  # one step, which fails: only the request in the slot was in it
    r = await running
    assert r.status_code == 500 and "injected model failure" in r.json()["error"]["message"]
    gated.model.fail = False
    gated.model.open()
    r = await queued
    assert r.status_code == 200 and r.json()["status"] == "max_iterations"


@pytest.mark.parametrize("gated_config", [{"broker": {"error_window_s": 0.5}}], indirect=True)
async def test_readiness_reports_a_failing_engine_and_recovers(gated: Gated):
    gated.model.fail = True
    gated.model.open()
    assert (await gated.client.post("/v1/solve", json={"puzzle": PUZZLE})).status_code == 500
    r = await gated.client.get("/readyz")
    assert r.status_code == 503 and r.json()["error"]["code"] == "engine_error"
    assert "injected model failure" in r.json()["error"]["message"]
    gated.model.fail = False  # a step that succeeds makes the server ready at once
    assert (await gated.client.post("/v1/solve", json={"puzzle": PUZZLE, "depth": 1})).status_code == 200
    assert (await gated.client.get("/readyz")).status_code == 200

    gated.model.fail = True  # an idle server has no step to succeed with: the window lets traffic back in
    assert (await gated.client.post("/v1/solve", json={"puzzle": PUZZLE})).status_code == 500
    assert (await gated.client.get("/readyz")).json()["error"]["code"] == "engine_error"
    await asyncio.sleep(0.6)
    assert (await gated.client.get("/readyz")).status_code == 200
