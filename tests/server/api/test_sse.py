"""The SSE wire format: every event has an increasing ``id``, a queued stream gets heartbeat comments,
and the OpenAPI document describes the events."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from tests.server.api.conftest import PUZZLE, Gated
from tests.server.api.test_jobs import poll
from tests.server.sse import parse_sse


def blocks(text: str) -> list[str]:
    return [b for b in text.split("\n\n") if b]


async def test_every_event_has_an_increasing_id(client: httpx.AsyncClient):
    r = await client.post("/v1/solve", json={"puzzle": PUZZLE, "stream": True, "depth": 6, "stream_every": 2})
    events = blocks(r.text)
    assert [re.match(r"id: (\d+)\nevent: ", e).group(1) for e in events] == [str(i) for i in range(1, len(events) + 1)]
    assert [name for name, _ in parse_sse(r.text.splitlines())] == ["iteration"] * (len(events) - 1) + ["result"]


async def test_a_verified_stream_names_each_trajectory_and_restart_and_shows_each_end(client: httpx.AsyncClient):
    """The tiny model never answers a valid grid: verified mode restarts until the budget is spent, and the
    stream says which trajectory and restart each event shows, and when and how each one ended."""
    body = {"puzzle": PUZZLE, "stream": True, "verify": True, "depth": 4, "budget": 12, "seed": 3}
    events = parse_sse((await client.post("/v1/solve", json=body)).text.splitlines())
    result = events[-1][1]
    assert events[-1][0] == "result" and result["restarts"] == 2 and result["iterations"] == [4, 4, 4]
    shown = [(d["trajectory"], d["restart"], d["iteration"], d["ended"], d["verified"]) for _, d in events[:-1]]
    assert all(t == restart for t, restart, *_ in shown)
    # on an idle server the restarts run side by side: each step shows the most settled trajectory, and
    # every trajectory's last iteration comes, once, with why it ended
    for k in range(3):
        mine = [(i, ended, ok) for t, _, i, ended, ok in shown if t == k]
        assert [i for i, _, _ in mine] == sorted({i for i, _, _ in mine}), shown
        assert mine[-1] == (4, "depth", False) and all(ended is None for _, ended, _ in mine[:-1]), shown


@pytest.mark.parametrize("gated_config", [{"settings": {"sse_heartbeat_s": 0.05}}], indirect=True)
async def test_a_stream_waiting_in_the_queue_gets_heartbeat_comments(gated: Gated):
    blocker = await gated.client.post("/v1/jobs", json={"puzzle": PUZZLE, "depth": 64, "breadth": 2})
    gated.model.allow(1)
    await poll(gated.client, blocker.headers["Location"], "running")  # both slots taken
    stream = asyncio.ensure_future(
        gated.client.post("/v1/solve", json={"puzzle": PUZZLE, "stream": True, "depth": 2})
    )
    await asyncio.sleep(0.5)  # queued behind the blocker meanwhile
    gated.model.open()
    text = (await stream).text
    first = blocks(text)[0]
    assert first == ": pending", text[:200]
    assert [name for name, _ in parse_sse(text.splitlines())][-1] == "result"  # comments change nothing else


async def test_openapi_documents_the_stream_events(client: httpx.AsyncClient):
    content = (await client.get("/openapi.json")).json()["paths"]["/v1/solve"]["post"]["responses"]["200"]["content"]
    described = content["text/event-stream"]["schema"]["description"]
    for word in ("id: <n>", "iteration", "IterationData", "SolveResponse", "ErrorResponse", ": pending"):
        assert word in described
