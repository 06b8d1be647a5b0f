"""Request ids: the client's X-Request-Id (checked) or a fresh one, echoed on every response, named in the
log, and the job id of POST /v1/jobs, where an id in use is a 409."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.live_server import save_tiny_model, serve
from tests.server.api.conftest import PUZZLE, Gated
from tests.server.api.test_errors import error_of


async def test_a_request_without_an_id_gets_a_fresh_one(client: httpx.AsyncClient):
    ids = {(await client.get("/v1/models")).headers["x-request-id"] for _ in range(2)}
    assert len(ids) == 2 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


async def test_the_clients_id_is_echoed_on_success_errors_and_streams(client: httpx.AsyncClient):
    rid = {"x-request-id": "trace-1.a:B_c"}
    assert (await client.get("/v1/models", headers=rid)).headers["x-request-id"] == "trace-1.a:B_c"
    assert (await client.get("/v1/jobs/nope", headers=rid)).headers["x-request-id"] == "trace-1.a:B_c"
    stream = {"puzzle": PUZZLE, "depth": 2, "stream": True}
    async with client.stream("POST", "/v1/solve", json=stream, headers=rid) as r:
        assert r.status_code == 200 and r.headers["x-request-id"] == "trace-1.a:B_c"


@pytest.mark.parametrize("bad", ["x" * 129, "two words", "semi;colon", "ünicode".encode(), ""])
async def test_an_unusable_id_is_422_naming_the_header(client: httpx.AsyncClient, bad: str | bytes):
    r = await client.post("/v1/solve", json={"puzzle": PUZZLE, "depth": 1}, headers={"x-request-id": bad})
    error = error_of(r, 422)
    assert error["field"] == "X-Request-Id" and "128 characters" in error["message"]
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])  # the refusal itself is traceable


async def test_the_request_id_is_the_job_id_and_a_live_duplicate_is_409(gated: Gated):
    rid = {"x-request-id": "my-job-1"}
    r = await gated.client.post("/v1/jobs", json={"puzzle": PUZZLE, "depth": 64}, headers=rid)
    assert r.status_code == 202 and r.json()["id"] == "my-job-1" and r.headers["location"] == "/v1/jobs/my-job-1"
    again = await gated.client.post("/v1/jobs", json={"puzzle": PUZZLE, "depth": 1}, headers=rid)
    error = error_of(again, 409)
    assert error["code"] == "duplicate_job_id" and "my-job-1" in error["message"] and error["field"] == "X-Request-Id"
    assert gated.in_flight() == 1  # the duplicate queued nothing
    gated.model.open()
    assert (await gated.client.delete("/v1/jobs/my-job-1")).status_code == 200
    # a finished job keeps its id until its result expires
    assert error_of(await gated.client.post("/v1/jobs", json={"puzzle": PUZZLE}, headers=rid), 409)


async def test_a_job_without_an_id_is_named_by_the_fresh_request_id(client: httpx.AsyncClient):
    r = await client.post("/v1/jobs", json={"puzzle": PUZZLE, "depth": 1})
    assert r.status_code == 202 and r.json()["id"] == r.headers["x-request-id"]


def test_the_server_log_names_the_request_id(tmp_path):
    with serve(save_tiny_model(tmp_path / "tiny"), env={"EQR_LOG_LEVEL": "info"}) as server:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            r = http.get("/v1/jobs/unknown", headers={"x-request-id": "find-me-in-the-log"})
            assert r.status_code == 404 and r.headers["x-request-id"] == "find-me-in-the-log"
        server.process.terminate()
        server.process.wait(30)
        lines = [line for line in server.log_path.read_text().splitlines() if "find-me-in-the-log" in line]
        assert any("GET /v1/jobs/unknown" in line and "404" in line for line in lines), lines
