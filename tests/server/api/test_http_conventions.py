"""CORS (off unless origins are listed; refusals in the error shape) and gzip of large responses."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from eqr.server.api import create_app
from eqr.server.settings import Settings
from tests.server.api.conftest import PUZZLE, make_settings, serving
from tests.server.api.test_errors import error_of

ORIGIN = "https://puzzles.example"
KEY = "k-cors-5e1f0a"


def preflight(origin: str, method: str = "POST", headers: str = "authorization,content-type") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}


async def test_cors_is_off_by_default(client: httpx.AsyncClient):
    r = await client.options("/v1/solve", headers=preflight(ORIGIN))
    assert "access-control-allow-origin" not in r.headers
    r = await client.get("/v1/models", headers={"Origin": ORIGIN})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


@pytest.fixture
async def cors_client(model_dir: Path):
    async with serving(create_app(make_settings(model_dir, cors_origins=ORIGIN, api_keys=KEY))) as c:
        yield c


async def test_listed_origins_may_call_with_a_key_and_read_errors_and_headers(cors_client: httpx.AsyncClient):
    r = await cors_client.options("/v1/solve", headers=preflight(ORIGIN))
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    denied = await cors_client.post("/v1/solve", json={"puzzle": PUZZLE}, headers={"Origin": ORIGIN})
    assert error_of(denied, 401) and denied.headers["access-control-allow-origin"] == ORIGIN  # readable by the page
    exposed = denied.headers["access-control-expose-headers"].lower()
    assert "x-request-id" in exposed and "retry-after" in exposed and "location" in exposed


async def test_other_origins_are_refused_in_the_error_shape(cors_client: httpx.AsyncClient):
    error = error_of(await cors_client.options("/v1/solve", headers=preflight("https://evil.example")), 400)
    assert error["code"] == "cors_rejected" and "origin" in error["message"].lower()
    r = await cors_client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_origins_must_be_origins():
    with pytest.raises(ValidationError, match="scheme://host"):
        Settings(cors_origins="https://ok.example,puzzles.example/path")
    assert Settings(cors_origins=" * ").cors_origin_list == ["*"]


async def test_large_responses_are_gzipped_small_ones_not(client: httpx.AsyncClient):
    gzip = {"Accept-Encoding": "gzip"}
    batch = await client.post("/v1/solve/batch", json={"puzzles": [PUZZLE] * 8, "depth": 1}, headers=gzip)
    for r in (await client.get("/metrics", headers=gzip), await client.get("/openapi.json", headers=gzip), batch):
        assert r.status_code == 200 and r.headers.get("content-encoding") == "gzip", r.request.url
    assert batch.json()["results"][7]["index"] == 7  # httpx inflated it again
    assert "content-encoding" not in (await client.get("/healthz", headers=gzip)).headers
    plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"})  # only when the client accepts it
    assert "content-encoding" not in plain.headers
