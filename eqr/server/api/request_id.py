"""Request ids: one per HTTP request, the client's ``X-Request-Id`` or a fresh one, in headers and logs.

A client that sends ``X-Request-Id`` can find its request in the server log and, for ``POST /v1/jobs``,
address the job by that id. Because the id is echoed into a response header and into log lines, it is
checked first: at most :data:`MAX_LENGTH` characters from a small safe set, so nothing a client sends
can split a header or forge a log line. An unusable id is a 422 (which itself carries a fresh id).

The id lives in a context variable for the duration of the request: the ASGI app runs in one task per
request, so every log line written while serving it, uvicorn's access line included, can name it
through :class:`RequestIdFilter` without the id being passed around.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from typing import Annotated

from fastapi import Depends, Header
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eqr.server.api.errors import ApiError, respond

HEADER = "X-Request-Id"
MAX_LENGTH = 128
_SAFE = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_LENGTH}}}")
PATTERN = f"^{_SAFE.pattern}$"  # the same rule, anchored, for OpenAPI
NO_REQUEST = "-"  # what log lines outside any request show

current: contextvars.ContextVar[str] = contextvars.ContextVar("eqr_request_id", default=NO_REQUEST)


def invalid_request_id() -> ApiError:
    return ApiError(
        422,
        "invalid_request",
        f"{HEADER} must be 1-{MAX_LENGTH} characters of letters, digits and . _ : - (or left out: the server "
        "makes one)",
        field=HEADER,
    )


def request_id(request: Request) -> str:
    """This request's id (set by :class:`RequestIdMiddleware`)."""
    return request.scope["state"]["request_id"]


def client_gave_id(request: Request) -> bool:
    """Whether the id came from the client's ``X-Request-Id`` rather than the server."""
    return request.scope["state"]["request_id_from_client"]


def _declare_header(
    x_request_id: Annotated[
        str | None,
        Header(
            alias=HEADER,
            pattern=PATTERN,
            description="your id for this request, echoed in the response header and the server log, and the "
            "job id of POST /v1/jobs; default: the server makes one",
        ),
    ] = None,
) -> None:
    """Declares the header in OpenAPI; the middleware has checked it before any route runs."""


DOCUMENTED = Depends(_declare_header)


class RequestIdMiddleware:
    """Outermost layer: picks the id, exposes it to the app and the logs, and echoes it on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(HEADER)
        valid = given is not None and _SAFE.fullmatch(given) is not None
        rid = given if valid else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"], state["request_id_from_client"] = rid, valid
        token = current.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        try:
            if given is not None and not valid:
                metrics = getattr(scope["app"].state, "metrics", None) if "app" in scope else None
                await respond(invalid_request_id(), metrics)(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            current.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (``-`` outside a request) to every record, for ``%(request_id)s`` in a format."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current.get()
        return True
