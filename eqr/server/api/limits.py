"""Request body size limit, as plain ASGI middleware so it sees the raw byte stream.

A declared ``Content-Length`` over the limit is refused before a byte is read; a body without one
(chunked) is counted as it arrives and refused the moment it crosses the limit, so a client can
never make the server buffer more than ``max_bytes``.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eqr.server.api.errors import as_api_error, respond


class PayloadTooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so FastAPI's body reader lets it through to our handler."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds the limit of {limit} bytes")


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return

        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLarge(self.max_bytes)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except PayloadTooLarge:
            # normally the app's handler already answered; this covers reads outside a route
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = getattr(scope["app"].state, "metrics", None) if "app" in scope else None
        response = respond(as_api_error(PayloadTooLarge(self.max_bytes)), metrics)
        await response(scope, receive, send)
