"""Exceptions: one class per thing a caller can act on differently.

Every failure the SDK raises is an :class:`EqrError`. The server's error body
(``{"error": {"code", "message", "field", "cells"}}``) is mapped by its ``code`` first and its HTTP
status second, so a mistake reported in-band (an SSE ``error`` event has no status) and the same
mistake reported as a response become the same exception.

========================  ==========  =====================================================
exception                 status      what to do
========================  ==========  =====================================================
:class:`PuzzleError`      422         fix the puzzle; ``cells`` are the (row, col) at fault
:class:`InvalidRequest`   422         fix the parameter named by ``field``
:class:`PayloadTooLarge`  413         send less (split a batch)
:class:`BadRequest`       other 4xx   fix the request
:class:`Unauthorized`     401, 403    check the API key
:class:`NotFound`         404         unknown model, or unknown/expired job
:class:`Overloaded`       429         retry after ``retry_after`` seconds (done for you)
:class:`NotReady`         503         loading or draining; retry elsewhere or later
:class:`ServerError`      5xx         the server failed; report it
:class:`Timeout`          —           the client-side timeout passed
:class:`Unreachable`      —           no connection, or it broke mid-request
========================  ==========  =====================================================
"""

from __future__ import annotations

from typing import Any


class EqrError(Exception):
    """Base of every SDK error. ``status`` is the HTTP status (None when there was no response)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        field: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status}, code={self.code!r})"


class BadRequest(EqrError):
    """The request itself is wrong; sending it again will fail again."""


class InvalidRequest(BadRequest):
    """A parameter is out of range or unknown; ``field`` names it (e.g. ``depth``, ``puzzles.2``)."""


class PuzzleError(BadRequest):
    """The puzzle is malformed or breaks the rules; ``cells`` lists the (row, col) at fault, 0-based."""

    def __init__(self, message: str, *, cells: list[tuple[int, int]] | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.cells: list[tuple[int, int]] = cells or []


class PayloadTooLarge(BadRequest):
    """The body is over the server's limit."""


class Unauthorized(EqrError):
    """The server wants a (different) API key."""


class NotFound(EqrError):
    """Unknown model, or a job that does not exist or whose result has expired."""


class Overloaded(EqrError):
    """The queue is full (429); the server asks to come back after ``retry_after`` seconds."""


class NotReady(EqrError):
    """The server takes no work now (503): the model is loading, the engine stalled, or it is draining."""


class ServerError(EqrError):
    """The server failed (5xx other than 503); the request may be fine."""


class Timeout(EqrError):
    """No answer within the client's timeout. The server-side budget is the ``timeout_ms`` option instead."""


class Unreachable(EqrError):
    """The connection could not be made, or broke before the answer arrived.

    ``request_sent`` is False when the server cannot have seen the request (the connection was never
    made): only then is it safe to send a non-idempotent request again.
    """

    def __init__(self, message: str, *, request_sent: bool, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.request_sent = request_sent


_BY_CODE: dict[str, type[EqrError]] = {
    "invalid_puzzle": PuzzleError,
    "invalid_request": InvalidRequest,
    "payload_too_large": PayloadTooLarge,
    "queue_full": Overloaded,
    "not_ready": NotReady,
    "draining": NotReady,
    "model_not_found": NotFound,
    "job_not_found": NotFound,
    "engine_error": ServerError,
    "internal_error": ServerError,
}


def _by_status(status: int | None) -> type[EqrError]:
    if status is None:
        return EqrError
    if status in (401, 403):
        return Unauthorized
    if status == 404:
        return NotFound
    if status == 413:
        return PayloadTooLarge
    if status == 429:
        return Overloaded
    if status == 503:
        return NotReady
    if 400 <= status < 500:
        return BadRequest
    return ServerError


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header; the HTTP-date form is not used by eqr-serve and is ignored."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds)


def error_from_body(body: Any, *, status: int | None = None, retry_after: float | None = None) -> EqrError:
    """The exception for an error body (parsed JSON, possibly not of the expected shape)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        text = f"HTTP {status}" if status is not None else "unexpected error"
        return _by_status(status)(f"{text}: {body!r}"[:500], status=status, retry_after=retry_after)
    code = error.get("code")
    cls = _BY_CODE.get(code) or _by_status(status)
    kwargs: dict[str, Any] = {"status": status, "code": code, "field": error.get("field"), "retry_after": retry_after}
    if cls is PuzzleError:
        kwargs["cells"] = [(int(r), int(c)) for r, c in error.get("cells") or []]
    return cls(str(error.get("message") or code or "error"), **kwargs)
