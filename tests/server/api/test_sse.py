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
