"""Bounded request read time: a client must finish its headers, then its body, within fixed times.

uvicorn bounds only the idle time between requests (keep-alive). A client that opens a connection and
then sends a header line now and then, or a body at one byte a second, or a bare ``GET /`` without
the blank line that ends the headers, holds its connection (and a task, and a slot in the
reverse proxy's pool) for as long as it likes. :class:`TimedH11Protocol` is uvicorn's h11 protocol plus
two timers, read off h11's view of the client after every chunk of data:

- from the connection's first byte (or the next request's first byte on a kept-alive connection)
  until the headers are complete: ``header_timeout_s``;
- from the end of the headers until the end of the body: ``body_timeout_s``.

When one runs out, a client still waiting for its answer gets 408 ``request_timeout`` in the one JSON
error shape, and the connection is closed; the route waiting on the body sees a disconnect. Once the
whole request has arrived no timer runs, so a long solve or an SSE stream is never cut short.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from eqr.server.api.schemas import ErrorBody, ErrorResponse


def timeout_response(what: str, seconds: float) -> bytes:
    """A complete ``408`` response (the connection closes after it)."""
    error = ErrorBody(code="request_timeout", message=f"the request {what} took longer than {seconds:g} s to arrive")
    body = json.dumps(ErrorResponse(error=error).model_dump(mode="json")).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on reading each request's headers and on reading its body."""

    def __init__(self, *args: Any, header_timeout_s: float, body_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self._phase: str | None = None  # "headers", "body", or None: no request part is awaited
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch("headers")  # a new connection that sends nothing counts too

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request
        if self.conn.their_state is not h11.IDLE:  # an idle kept-alive connection is uvicorn's keep-alive timer's
            self._follow()
        else:
            self._watch(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._watch(None)
        super().connection_lost(exc)

    def _follow(self) -> None:
        """Arm the timer of the part the client is in the middle of sending, if any."""
        state = self.conn.their_state
        self._watch("headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None)

    def _watch(self, phase: str | None) -> None:
        if phase == self._phase:
            return  # the deadline runs from the start of the part, not from the latest byte
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._phase = phase
        if phase is not None and not self.transport.is_closing():
            seconds = self.header_timeout_s if phase == "headers" else self.body_timeout_s
            self._timer = self.loop.call_later(seconds, self._expire, phase, seconds)

    def _expire(self, phase: str, seconds: float) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        # while headers arrive no route runs yet (any cycle is the previous request's); a route waiting for
        # the body has not answered, unless it answered early without reading it (401, 413): then just close
        if phase == "headers" or not self.cycle.response_started:
            self.transport.write(timeout_response(phase, seconds))
        # connection_lost (soon, before the route can send anything) tells a route waiting on the body
        self.transport.close()


def timed_h11(header_timeout_s: float, body_timeout_s: float) -> functools.partial[TimedH11Protocol]:
    """What ``uvicorn.Config(http=...)`` takes: a protocol factory with the timeouts bound."""
    return functools.partial(TimedH11Protocol, header_timeout_s=header_timeout_s, body_timeout_s=body_timeout_s)
