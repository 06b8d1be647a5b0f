"""One error shape for every failure: ``{"error": {"code", "message", "field", "cells"}}``.

:func:`as_api_error` is the single table from exceptions (ours, the task codec's, the broker's,
FastAPI's and Starlette's) to an HTTP status and that shape. The exception handlers, the batch
endpoint (per-item errors), the SSE ``error`` event and the body-size middleware all use it, so a
mistake is described the same way wherever it surfaces. Unknown exceptions become a bare 500 that
names no internals; the traceback goes to the server log only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from eqr.model.tasks.errors import PuzzleError
from eqr.server.api.schemas import ErrorBody, ErrorResponse
from eqr.server.broker.base import InvalidParam, Overloaded, Unavailable, UnknownModel, WorkerTimeout
from eqr.server.jobs import SolveResult
from eqr.server.metrics import Metrics

log = logging.getLogger("eqr.server.api")

# Codes that mean "refused before any work was queued"; they feed eqr_rejections_total{reason}.
REJECTIONS = frozenset(
    {
        "invalid_request",
        "invalid_puzzle",
        "payload_too_large",
        "unsupported_media_type",
        "queue_full",
        "not_ready",
        "draining",
        "model_not_found",
        "model_unavailable",
        "unauthorized",
        "forbidden",
        "rate_limited",
        "too_many_in_flight",
        "auth_throttled",
        "duplicate_job_id",
    }
)
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """An error response in waiting: status, code, message and, when known, the field or cells."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        cells: Sequence[Sequence[int]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.cells = [list(c) for c in cells] if cells else None
        self.headers = dict(headers or {})

    def body(self) -> ErrorBody:
        return ErrorBody(code=self.code, message=self.message, field=self.field, cells=self.cells)


class ClientGone(Exception):
    """The client disconnected before its answer was ready; its work has been cancelled."""


def job_not_found(job_id: str) -> ApiError:
    return ApiError(404, "job_not_found", f"no job {job_id!r} (unknown, or its result expired)", field="id")


def duplicate_job_id(job_id: str) -> ApiError:
    return ApiError(
        409,
        "duplicate_job_id",
        f"a job {job_id!r} already exists (unfinished, or its result is still kept): send another X-Request-Id, "
        "or GET /v1/jobs/{id} to read that job",
        field="X-Request-Id",
    )


def model_not_found(name: str, served: list[str]) -> ApiError:
    shown = ", ".join(repr(s) for s in served) or "none yet"
    return ApiError(
        404, "model_not_found", f"model {name!r} is not served here; this server serves {shown}", field="model"
    )


def engine_failed(result: SolveResult) -> ApiError:
    """A request the engine could not finish (status ``failed``): a server fault, not the client's."""
    log.error("request %s failed in the engine: %s", result.request_id, result.error)
    return ApiError(500, "engine_error", f"the engine failed on this request: {result.error or 'unknown error'}")


def as_api_error(exc: BaseException) -> ApiError:
    """Describe any exception as an :class:`ApiError` (the batch endpoint re-points ``field`` per item)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, PuzzleError):
        return ApiError(422, "invalid_puzzle", exc.message, field="puzzle", cells=exc.cells)
    if isinstance(exc, Overloaded):
        retry = max(1, math.ceil(exc.retry_after_s))
        return ApiError(429, "queue_full", f"{exc}; retry in {retry} s", headers={"Retry-After": str(retry)})
    if isinstance(exc, Unavailable):
        retry = max(1, math.ceil(exc.retry_after_s))
        field = "model" if exc.code == "model_unavailable" else None
        return ApiError(503, exc.code, str(exc), field=field, headers={"Retry-After": str(retry)})
    if isinstance(exc, WorkerTimeout):
        retry = str(max(1, math.ceil(exc.retry_after_s)))
        return ApiError(504, "worker_timeout", str(exc), field="model", headers={"Retry-After": retry})
    if isinstance(exc, InvalidParam):
        return ApiError(422, "invalid_request", exc.message, field=exc.field)
    if isinstance(exc, UnknownModel):
        return model_not_found(exc.name, exc.served)
    if isinstance(exc, RequestValidationError):
        return _from_validation(exc.errors())
    if isinstance(exc, ClientGone):
        return ApiError(499, "client_closed_request", "the client disconnected; its work was cancelled")
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 400 and isinstance(exc.__cause__, (RecursionError, ValueError)):
            return _unparsable_body(exc.__cause__)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return ApiError(exc.status_code, code, str(exc.detail), headers=exc.headers)
    return ApiError(500, "internal_error", "internal server error; the server log has the details")


def _unparsable_body(cause: BaseException) -> ApiError:
    """FastAPI answers 400 for a body its JSON parser raised on (other than a syntax error); for a
    client these are the same mistake as malformed JSON, so they get the same 422."""
    if isinstance(cause, RecursionError):
        return ApiError(422, "invalid_request", "request body is not valid JSON: nested too deeply")
    if isinstance(cause, UnicodeDecodeError):
        return ApiError(422, "invalid_request", "request body is not valid JSON: not UTF-8 text")
    return ApiError(422, "invalid_request", "request body is not valid JSON")


def _from_validation(errors: Sequence[Any]) -> ApiError:
    """The first validation problem, with its field path (``puzzles.2``, ``depth``); counts the rest."""
    if not errors:
        return ApiError(422, "invalid_request", "invalid request")
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ())]
    if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
        loc = loc[1:]
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "malformed")
        return ApiError(422, "invalid_request", f"request body is not valid JSON: {detail}")
    field = ".".join(loc) or None
    message = first.get("msg", "invalid value")
    if field is None and first.get("type") == "missing":
        message = "a JSON request body is required"
    elif field is not None:
        message = f"{field}: {message}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return ApiError(422, "invalid_request", message, field=field)


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(
        ErrorResponse(error=error.body()).model_dump(mode="json"), status_code=error.status, headers=error.headers
    )


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    # Unknown exceptions reach here through Starlette's ServerErrorMiddleware, which re-raises them
    # after this response so the server logs the traceback; nothing more to log here.
    return respond(as_api_error(exc), getattr(request.app.state, "metrics", None))


def respond(error: ApiError, metrics: Metrics | None) -> JSONResponse:
    """The response for a request that failed; refusals are counted in ``eqr_rejections_total``."""
    if metrics is not None and error.code in REJECTIONS:
        metrics.reject(error.code)
    return error_response(error)


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception the API can raise through :func:`as_api_error`."""
    for exc_type in (
        ApiError,
        PuzzleError,
        Overloaded,
        Unavailable,
        InvalidParam,
        UnknownModel,
        WorkerTimeout,
        RequestValidationError,
        ClientGone,
        StarletteHTTPException,
        Exception,
    ):
        app.add_exception_handler(exc_type, _handle)
