"""Async jobs: 202 + Location, pending → running → done, cancel, TTL expiry, 404s."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from eqr.server.api import create_app
from tests.server.api.conftest import PUZZLE, Gated, make_settings, serving


async def poll(client: httpx.AsyncClient, location: str, status: str) -> dict:
    for _ in range(1000):
        view = (await client.get(location)).json()
        if view["status"] == status:
            return view
        await asyncio.sleep(0.005)
    raise AssertionError(f"job never reached {status!r}: {view}")


async def test_job_goes_pending_running_done(gated: Gated):
    r = await gated.client.post("/v1/jobs", json={"puzzle": PUZZLE, "depth": 3, "seed": 4})
    assert r.status_code == 202
    job_id = r.json()["id"]
    location = r.headers["Location"]
    assert location == f"/v1/jobs/{job_id}" and r.json() == {"id": job_id, "status": "pending", "result": None}
    assert (await gated.client.get(location)).json()["status"] == "pending"  # no step has run

    gated.model.allow(1)
    running = await poll(gated.client, location, "running")
    assert running["result"] is None

    gated.model.open()
    done = await poll(gated.client, location, "done")
    assert done["id"] == job_id and done["result"]["id"] == job_id
    assert done["result"]["status"] == "max_iterations" and done["result"]["iterations"] == [3]
    assert (await gated.client.get(location)).json() == done  # readable again until the TTL


async def test_delete_cancels_a_running_job_and_frees_its_slots(gated: Gated):
    r = await gated.client.post("/v1/jobs", json={"puzzle": PUZZLE, "depth": 64, "breadth": 2})
    location = r.headers["Location"]
    gated.model.allow(1)
    await poll(gated.client, location, "running")
    assert gated.broker.stats().live_slots == 2

    delete = asyncio.ensure_future(gated.client.delete(location))
    await gated.model.drip(delete.done)  # the engine notices the cancel at its next step
    r = await delete
    assert r.status_code == 200
    view = r.json()
    assert view["status"] == "cancelled" and view["result"]["status"] == "cancelled"
    assert max(view["result"]["iterations"]) < 64
    assert gated.broker.stats().live_slots == 0 and gated.broker.stats().in_flight == 0
    assert (await gated.client.get(location)).json() == view  # the job's state says cancelled from now on
    again = await gated.client.delete(location)  # a finished job: returned unchanged
    assert again.status_code == 200 and again.json() == view


async def test_delete_of_a_queued_job_cancels_it_before_it_runs(gated: Gated):
    # a higher-priority job that holds both slots keeps the next one queued, however slow the machine is
    # (the fair scheduler would share the slots between equals)
    blocker = await gated.client.post("/v1/jobs", json={"puzzle": PUZZLE, "depth": 64, "breadth": 2, "priority": 100})
    gated.model.allow(1)
    await poll(gated.client, blocker.headers["Location"], "running")
    r = await gated.client.post("/v1/jobs", json={"puzzle": PUZZLE, "depth": 64})
    assert (await gated.client.get(r.headers["Location"])).json()["status"] == "pending"
    delete = asyncio.ensure_future(gated.client.delete(r.headers["Location"]))
    await gated.model.drip(delete.done)
    view = (await delete).json()
    assert view["status"] == "cancelled" and view["result"]["status"] == "cancelled"
    assert max(view["result"]["iterations"]) == 0


async def test_delete_of_a_done_job_returns_it_unchanged(gated: Gated):
    gated.model.open()
    location = (await gated.client.post("/v1/jobs", json={"puzzle": PUZZLE, "depth": 2})).headers["Location"]
    done = await poll(gated.client, location, "done")
    again = await gated.client.delete(location)
    assert again.status_code == 200 and again.json() == done and done["result"]["status"] == "max_iterations"


async def test_finished_job_expires_after_its_ttl(model_dir):
    async with serving(create_app(make_settings(model_dir, job_ttl_s=0.3))) as client:
        location = (await client.post("/v1/jobs", json={"puzzle": PUZZLE, "depth": 2})).headers["Location"]
        await poll(client, location, "done")
        await asyncio.sleep(0.4)
        r = await client.get(location)
        assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_unknown_job_is_404(client: httpx.AsyncClient, method: str):
    r = await client.request(method, "/v1/jobs/0123456789abcdef")
    assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"


async def test_plain_solves_are_not_kept_as_jobs(client: httpx.AsyncClient):
    solved = (await client.post("/v1/solve", json={"puzzle": PUZZLE, "depth": 1})).json()
    assert (await client.get(f"/v1/jobs/{solved['id']}")).status_code == 404
