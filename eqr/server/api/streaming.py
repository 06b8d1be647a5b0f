"""Waiting for results while watching the client, and the server-sent-events response.

Work nobody will read is wasted slots, so a client that goes away cancels its job. After FastAPI has
read the request body, the only message ``receive()`` can still deliver is ``http.disconnect``; one
task awaiting it is cheaper and quicker than polling ``request.is_disconnected()``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from eqr.server.api.errors import ClientGone, as_api_error, engine_failed
from eqr.server.api.schemas import ErrorResponse, IterationData, SolveResponse
from eqr.server.broker.base import BrokerError, JobHandle, ModelCard
from eqr.server.jobs import IterationEvent, SolveResult, Status

T = TypeVar("T")
log = logging.getLogger("eqr.server.api")


async def wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(work: Awaitable[T], receive: Receive) -> T:
    """Await ``work``; if the client disconnects first, cancel it and raise :class:`ClientGone`."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(wait_for_disconnect(receive))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        finished = task.done()
    finally:
        for pending in (task, watch):
            pending.cancel()
        # let both unwind, so the caller's clean-up never races a still-running ``work``
        await asyncio.wait({task, watch})
    if not finished:
        raise ClientGone
    return task.result()


async def results_or_cancel(handles: list[JobHandle], receive: Receive) -> list[SolveResult]:
    """Results of ``handles`` in order; on disconnect (or our own cancellation) cancel every job left."""

    async def all_results() -> list[SolveResult]:
        # a coroutine, not a bare gather future: cancelling it then leaves no unretrieved exception
        return list(await asyncio.gather(*(h.result() for h in handles)))

    try:
        return await unless_disconnected(all_results(), receive)
    finally:
        for handle in handles:
            if handle.peek() is None:
                handle.cancel()


def sse(event: str, data: BaseModel, event_id: int) -> str:
    """One server-sent event; the data is one line of JSON, the id its place in the stream (1, 2, ...)."""
    payload = json.dumps(data.model_dump(mode="json"), separators=(",", ":"))
    return f"id: {event_id}\nevent: {event}\ndata: {payload}\n\n"


async def solve_events(handle: JobHandle, card: ModelCard, form: str, heartbeat_s: float) -> AsyncIterator[str]:
    """``iteration`` events as the engine reports them, then one ``result`` (or ``error``) event.

    While nothing happens for ``heartbeat_s`` (the request waits in the queue, or between sparse
    events) a comment line such as ``: pending`` goes out, so the client and any proxy in between see a
    live connection rather than one to time out.
    """
    count = 0
    events = aiter(handle.events())
    upcoming: asyncio.Future[IterationEvent] | None = None
    try:
        while True:
            upcoming = upcoming or asyncio.ensure_future(anext(events))
            # wait without cancelling: a cancelled anext would end the event generator itself
            done, _ = await asyncio.wait({upcoming}, timeout=heartbeat_s)
            if not done:
                yield f": {handle.state.value}\n\n"
                continue
            try:
                event = upcoming.result()
            except StopAsyncIteration:
                break
            upcoming = None
            count += 1
            yield sse("iteration", IterationData.from_event(event, card, form), count)
        upcoming = None
        result = await handle.result()
        if result.status is Status.FAILED:
            yield sse("error", ErrorResponse(error=engine_failed(result).body()), count + 1)
        else:
            yield sse("result", SolveResponse.from_result(result, card), count + 1)
    except Exception as exc:  # the status line is sent already: report in-band, never a traceback
        if isinstance(exc, BrokerError):  # an expected end (e.g. no worker in time): no traceback in the log
            log.warning("stream of request %s ended: %s", handle.id, exc)
        else:
            log.exception("stream of request %s failed", handle.id)
        yield sse("error", ErrorResponse(error=as_api_error(exc).body()), count + 1)
    finally:
        if upcoming is not None:
            upcoming.cancel()


class EventStream(StreamingResponse):
    """``text/event-stream`` from an async iterator; ``on_close`` runs however the stream ends.

    Unlike the base class, it always watches for the client leaving (not only on old ASGI spec
    versions), so a client that disconnects while waiting for the next event cancels at once.
    """

    media_type = "text/event-stream"

    def __init__(self, chunks: AsyncIterator[str], on_close: Callable[[], None]) -> None:
        super().__init__(chunks, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.chunks = chunks
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def pump() -> None:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self.chunks:
                await send({"type": "http.response.body", "body": chunk.encode(), "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        try:
            await unless_disconnected(pump(), receive)
        except (ClientGone, OSError):
            pass  # the client left; nothing more can be sent
        finally:
            self.on_close()
            aclose = getattr(self.chunks, "aclose", None)
            if aclose is not None:
                await aclose()
