"""API keys and per-client limits: 401/403/429 in the one error shape, open operational endpoints,
keys that never reach a log, and bounded limiter memory."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from eqr.model.checkpoint import load_model
from eqr.model.tasks.registry import task_for
from eqr.server.api import create_app
from eqr.server.api.auth import ApiKeyError, fingerprint, load_api_keys
from eqr.server.api.ratelimit import InFlightLimiter, RateLimiter
from eqr.server.broker.local import LocalBroker
from eqr.server.engine import Engine, EngineConfig
from eqr.server.settings import Settings
from tests.server.api.conftest import PUZZLE, Gated, GatedModel, make_settings, serving, until
from tests.server.api.test_errors import error_of

KEY, OTHER_KEY = "k-3f9a1c77e0b24d6a", "k-second-key-0042"
SOLVE = {"puzzle": PUZZLE, "depth": 1}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def keyed(model_dir: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """Keys from both sources: one in EQR_API_KEYS, one in the keys file."""
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# clients\n\n{OTHER_KEY}\n")
    app = create_app(make_settings(model_dir, api_keys=KEY, api_keys_file=keys_file))
    async with serving(app) as client:
        yield client


async def test_missing_key_is_401_and_wrong_key_403(keyed: httpx.AsyncClient):
    missing = await keyed.post("/v1/solve", json=SOLVE)
    assert error_of(missing, 401)["code"] == "unauthorized" and missing.headers["WWW-Authenticate"].startswith("Bearer")
    for headers in (bearer("nope"), bearer(KEY + "x"), bearer(KEY[:-1])):
        assert error_of(await keyed.post("/v1/solve", json=SOLVE, headers=headers), 403)["code"] == "forbidden"
    basic = await keyed.get("/v1/models", headers={"Authorization": f"Basic {KEY}"})
    assert error_of(basic, 401)["code"] == "unauthorized"
    for path in ("/v1/models", "/v1/jobs/anything"):
        assert (await keyed.get(path)).status_code == 401


async def test_either_configured_key_is_accepted(keyed: httpx.AsyncClient):
    for key in (KEY, OTHER_KEY):
        r = await keyed.post("/v1/solve", json=SOLVE, headers=bearer(key))
        assert r.status_code == 200, r.text
    r = await keyed.post("/v1/jobs", json=SOLVE, headers={"authorization": f"bearer {KEY}"})  # case-insensitive
    assert r.status_code == 202


async def test_operational_endpoints_and_the_playground_stay_open(keyed: httpx.AsyncClient):
    for path in ("/healthz", "/readyz", "/metrics", "/", "/openapi.json"):
        assert (await keyed.get(path)).status_code == 200, path
    doc = (await keyed.get("/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["apiKey"] == {"type": "http", "scheme": "bearer"}
    assert doc["paths"]["/v1/solve"]["post"]["security"] == [{"apiKey": []}]
    assert "security" not in doc["paths"]["/readyz"]["get"]


async def test_refusals_are_counted_by_reason(keyed: httpx.AsyncClient):
    await keyed.post("/v1/solve", json=SOLVE)
    await keyed.post("/v1/solve", json=SOLVE, headers=bearer("wrong"))
    text = (await keyed.get("/metrics")).text
    assert 'eqr_rejections_total{reason="unauthorized"} 1.0' in text
    assert 'eqr_rejections_total{reason="forbidden"} 1.0' in text


async def test_keys_never_reach_the_log(model_dir: Path, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    app = create_app(make_settings(model_dir, api_keys=f"{KEY},{OTHER_KEY}"))
    async with serving(app) as client:
        await client.post("/v1/solve", json=SOLVE, headers=bearer(KEY))
        await client.post("/v1/solve", json=SOLVE, headers=bearer("guess-" + KEY))
    assert fingerprint(KEY) in caplog.text  # keys are named by a hash prefix only
    assert KEY not in caplog.text and OTHER_KEY not in caplog.text
    assert KEY not in repr(app.state.settings) and KEY not in str(app.state.settings.model_dump())


def test_unusable_key_configurations_fail_closed(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.write_text("# nobody yet\n\n")
    for settings, words in [
        (Settings(api_keys_file=tmp_path / "missing"), "cannot read"),
        (Settings(api_keys_file=empty), "holds no key"),
        (Settings(api_keys="good,has space"), "spaces"),
    ]:
        with pytest.raises(ApiKeyError, match=words) as info:
            load_api_keys(settings)
        assert "has space" not in str(info.value)
    assert load_api_keys(Settings()) == {}
    assert set(load_api_keys(Settings(api_keys=" a , b ,, "))) == {"a", "b"}


async def test_rate_limit_is_per_key_with_retry_after(model_dir: Path):
    app = create_app(make_settings(model_dir, api_keys=f"{KEY},{OTHER_KEY}", rate_limit_per_s=0.5, rate_limit_burst=2))
    async with serving(app) as client:
        statuses = [(await client.get("/v1/models", headers=bearer(KEY))).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        r = await client.get("/v1/models", headers=bearer(KEY))
        assert error_of(r, 429)["code"] == "rate_limited" and int(r.headers["Retry-After"]) in (1, 2)
        assert (await client.get("/v1/models", headers=bearer(OTHER_KEY))).status_code == 200  # its own bucket
        assert (await client.get("/readyz")).status_code == 200  # probes are never limited


async def test_rate_limit_is_per_ip_without_keys(model_dir: Path):
    app = create_app(make_settings(model_dir, rate_limit_per_s=0.5, rate_limit_burst=1))
    async with serving(app) as first:
        other = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("10.9.8.7", 4321)), base_url="http://t"
        )
        async with other:
            assert (await first.get("/v1/models")).status_code == 200
            assert error_of(await first.get("/v1/models"), 429)["code"] == "rate_limited"
            assert (await other.get("/v1/models")).status_code == 200


async def test_repeated_key_failures_from_one_address_are_throttled(model_dir: Path):
    app = create_app(make_settings(model_dir, api_keys=KEY, auth_failures_per_min=3))
    async with serving(app) as client:
        other = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("10.9.8.7", 4321)), base_url="http://t"
        )
        async with other:
            for _ in range(5):  # successes spend nothing from the failure budget
                assert (await client.get("/v1/models", headers=bearer(KEY))).status_code == 200
            guesses = [await client.get("/v1/models", headers=bearer(f"guess-{i}")) for i in range(2)]
            missing = await client.get("/v1/models")
            assert [r.status_code for r in (*guesses, missing)] == [403, 403, 401]
            # the budget is spent: the next attempt is refused before any key is looked at, even a right one
            r = await client.get("/v1/models", headers=bearer(KEY))
            assert error_of(r, 429)["code"] == "auth_throttled" and int(r.headers["Retry-After"]) in (19, 20)
            assert (await other.get("/v1/models", headers=bearer(KEY))).status_code == 200  # per address
            assert (await client.get("/readyz")).status_code == 200  # probes are never guarded
            assert 'eqr_rejections_total{reason="auth_throttled"} 1.0' in (await client.get("/metrics")).text


async def test_one_client_repeating_a_wrong_key_does_not_lock_out_its_address(model_dir: Path):
    app = create_app(make_settings(model_dir, api_keys=f"{KEY},{OTHER_KEY}", auth_failures_per_min=3))
    async with serving(app) as client:  # every request comes from the same address, as behind a NAT
        stale = [await client.get("/v1/models", headers=bearer("revoked-key")) for _ in range(3)]
        assert [r.status_code for r in stale] == [403, 403, 403]
        for _ in range(3):  # the broken client is throttled, again and again ...
            r = await client.get("/v1/models", headers=bearer("revoked-key"))
            assert error_of(r, 429)["code"] == "auth_throttled"
        for key in (KEY, OTHER_KEY):  # ... while its neighbours' keys keep working
            assert (await client.get("/v1/models", headers=bearer(key))).status_code == 200
        no_key = [await client.get("/v1/models") for _ in range(4)]  # so does a client sending no key at all
        assert [r.status_code for r in no_key] == [401, 401, 401, 429]
        assert (await client.get("/v1/models", headers=bearer(KEY))).status_code == 200
        # guessing (a third different wrong key) spends the address's budget: now everyone waits
        assert (await client.get("/v1/models", headers=bearer("guess-1"))).status_code == 403
        r = await client.get("/v1/models", headers=bearer(KEY))
        assert error_of(r, 429)["code"] == "auth_throttled" and int(r.headers["Retry-After"]) in (19, 20)


@pytest.mark.parametrize(
    "gated_config", [{"settings": {"api_keys": f"{KEY},{OTHER_KEY}", "max_in_flight_per_client": 2}}], indirect=True
)
async def test_requests_in_flight_are_limited_per_key_until_they_finish(gated: Gated):
    def solve(key: str, **extra: object) -> asyncio.Task:
        return asyncio.ensure_future(gated.client.post("/v1/solve", json={**SOLVE, **extra}, headers=bearer(key)))

    held = [solve(KEY), solve(KEY, stream=True)]  # a stream counts until its last event is sent
    await until(lambda: gated.in_flight() == 2)
    r = await gated.client.post("/v1/solve", json=SOLVE, headers=bearer(KEY))
    assert error_of(r, 429)["code"] == "too_many_in_flight" and r.headers["Retry-After"] == "1"
    other = solve(OTHER_KEY)  # another key has its own allowance
    await until(lambda: gated.in_flight() == 3)
    gated.model.open()
    assert [t.status_code for t in await asyncio.gather(*held, other)] == [200, 200, 200]
    assert (await gated.client.post("/v1/solve", json=SOLVE, headers=bearer(KEY))).status_code == 200


def test_token_bucket_refills_at_its_rate():
    now = [0.0]
    limiter = RateLimiter(2.0, 3, clock=lambda: now[0])
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.5)  # one token every 0.5 s
    now[0] += 0.5
    assert limiter.acquire("a") == 0.0 and limiter.acquire("a") > 0
    assert RateLimiter(2.5).burst == 3  # burst 0: the rate, rounded up
    assert limiter.blocked("a") == pytest.approx(0.5) and limiter.blocked("new") == 0.0  # a peek takes nothing
    now[0] += 0.5
    assert limiter.blocked("a") == 0.0 and limiter.acquire("a") == 0.0


def test_limiter_memory_is_bounded_however_many_clients_come():
    now = [0.0]
    limiter = RateLimiter(1.0, 2, clock=lambda: now[0], max_tracked=100)
    for i in range(1000):
        limiter.acquire(f"ip:{i}")
    assert len(limiter) == 100  # the least recently seen are forgotten
    now[0] += 2.0  # every bucket has refilled: each is as good as new, so none is kept
    limiter.acquire("late")
    assert len(limiter) == 1
    in_flight = InFlightLimiter(1)
    assert in_flight.enter("a") and not in_flight.enter("a")
    in_flight.leave("a")
    assert len(in_flight) == 0 and in_flight.enter("a")


def keys_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keys"
    path.write_text(text)
    return path


async def test_the_keys_file_caps_priority_and_rate_per_key(model_dir: Path, tmp_path: Path):
    path = keys_file(tmp_path, f"# operator: limits after the key\n{KEY} max_priority=5 rate=1\n{OTHER_KEY}\n")
    async with serving(create_app(make_settings(model_dir, api_keys_file=path, auth_failures_per_min=0))) as client:
        for endpoint, body in [("/v1/solve", SOLVE), ("/v1/jobs", SOLVE), ("/v1/solve/batch", {"puzzles": [PUZZLE]})]:
            r = await client.post(endpoint, json={**body, "priority": 6}, headers=bearer(KEY))
            error = error_of(r, 422)
            assert error["field"] == "priority" and "max_priority of 5" in error["message"] and "6" in error["message"]
            await asyncio.sleep(1.1)  # the key's own rate: 1 request a second
        assert (await client.post("/v1/solve", json={**SOLVE, "priority": 5}, headers=bearer(KEY))).status_code == 200
        assert error_of(await client.get("/v1/models", headers=bearer(KEY)), 429)["code"] == "rate_limited"
        # a plain line: no caps (the server-wide settings, here none)
        for _ in range(3):
            r = await client.post("/v1/solve", json={**SOLVE, "priority": 1000}, headers=bearer(OTHER_KEY))
            assert r.status_code == 200


async def test_the_keys_file_limits_requests_in_flight_per_key(model_dir: Path, tmp_path: Path):
    network, meta = load_model(model_dir)
    model = GatedModel(network)
    config = EngineConfig(slots=2, max_queue=16)
    engine = Engine(model, config, model_name="tiny", task=task_for(meta), defaults=meta["inference"])
    path = keys_file(tmp_path, f"{KEY} in_flight=1\n{OTHER_KEY}\n")
    app = create_app(make_settings(model_dir, api_keys_file=path), LocalBroker(engine))
    try:
        async with serving(app) as client:
            held = asyncio.ensure_future(client.post("/v1/solve", json=SOLVE, headers=bearer(KEY)))
            await until(lambda: app.state.broker.stats().in_flight == 1)
            r = await client.post("/v1/solve", json=SOLVE, headers=bearer(KEY))
            assert error_of(r, 429)["code"] == "too_many_in_flight" and "at most 1 " in error_of(r, 429)["message"]
            other = [asyncio.ensure_future(client.post("/v1/solve", json=SOLVE, headers=bearer(OTHER_KEY)))]
            await until(lambda: app.state.broker.stats().in_flight == 2)  # the other key is not capped
            model.open()
            assert (await held).status_code == 200 and (await other[0]).status_code == 200
    finally:
        model.open()


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("max_priority=high", "max_priority must be an integer from -1000 to 1000, got 'high'"),
        ("rate=0", "rate must be requests per second, above 0"),
        ("in_flight=0", "in_flight must be an integer of at least 1"),
        ("priority=3", "unknown option 'priority'"),
    ],
)
def test_bad_limits_in_the_keys_file_stop_the_server_naming_line_and_option(tmp_path: Path, line: str, words: str):
    path = keys_file(tmp_path, f"{OTHER_KEY}\n{KEY} {line}\n")
    with pytest.raises(ApiKeyError, match=re.escape(words)) as info:
        load_api_keys(Settings(api_keys_file=path))
    assert f"line 2 (key {fingerprint(KEY)})" in str(info.value) and KEY not in str(info.value)
