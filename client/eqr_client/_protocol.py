"""The wire protocol, free of I/O: requests to send, and what a response or a stream event means.

:class:`~eqr_client.Client` and :class:`~eqr_client.AsyncClient` differ only in how they wait; both
build their requests and read their answers here, so the two cannot disagree about the API.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, TypeVar

import httpx
from pydantic import BaseModel

from eqr_client._version import __version__
from eqr_client.errors import EqrError, ServerError, Timeout, Unreachable, error_from_body, parse_retry_after
from eqr_client.puzzle import PuzzleInput, puzzle_json
from eqr_client.retry import NO_RETRY, Retry
from eqr_client.types import BatchItem, IterationEvent, SolveResult

M = TypeVar("M", bound=BaseModel)

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
API_KEY_ENV = "EQR_API_KEY"


class SolveOptions(TypedDict, total=False):
    """Optional knobs of a solve (``solve``, ``solve_many``, ``submit``, ``stream``, ``solve_batch``).

    Omitted ones take the served model's defaults; the server caps ``depth`` and ``breadth``.
    """

    model: str  # served model name (and with it the task); default the server's first; another is NotFound
    preset: Literal["paper"]  # the paper's protocol for every option left out (depth 64, breadth 128, noise 0.5)
    depth: int  # most iterations per trajectory
    breadth: int  # trajectories from independent random starts
    aggregate: Literal["converged", "vote"]  # pick the most-converged trajectory, or the majority
    quorum: int  # stop the rest once this many trajectories agree
    noise: float  # latent noise scale
    seed: int  # same seed, same answer
    timeout_ms: int  # server-side budget: answer the best so far (status "deadline") after this long
    priority: int  # higher runs first
    halt: Literal["convergence", "q_halt"]  # convergence rule, or the learned halting head
    stream_every: int  # streaming: an event every this many iterations
    breadth_mode: Literal["fixed", "on_demand"]  # on_demand: breadth is a cap, trajectories join until a quorum
    verify: bool  # verified mode: restart answers that fail the task's rules, stop at the first that passes
    restart: Literal["full", "renoise"]  # verified mode's restarts: fresh latents, or re-noise only cells in conflict
    stuck_after: int  # verified mode: end (status "stuck") once one wrong answer has failed this many times
    budget: int  # most iterations of all trajectories together, restarts included


OPTION_NAMES = frozenset(SolveOptions.__annotations__)


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options as JSON fields; a misspelt name fails here as a TypeError, like a bad keyword would."""
    unknown = sorted(set(options) - OPTION_NAMES)
    if unknown:
        raise TypeError(f"unknown solve option(s) {unknown}; known: {sorted(OPTION_NAMES)}")
    return {k: v for k, v in options.items() if v is not None}


@dataclass(frozen=True)
class Call:
    """One API call. ``idempotent`` calls may be resent after a connection broke mid-request."""

    method: str
    path: str
    body: Any = None
    idempotent: bool = False
    retry: bool = True


def solve_call(puzzle: PuzzleInput, options: Mapping[str, Any], *, stream: bool = False) -> Call:
    body = {"puzzle": puzzle_json(puzzle), **check_options(options)}
    if stream:
        body["stream"] = True
    return Call("POST", "/v1/solve", body)


def batch_call(puzzles: Sequence[PuzzleInput], options: Mapping[str, Any]) -> Call:
    return Call("POST", "/v1/solve/batch", {"puzzles": [puzzle_json(p) for p in puzzles], **check_options(options)})


def submit_call(puzzle: PuzzleInput, options: Mapping[str, Any]) -> Call:
    return Call("POST", "/v1/jobs", {"puzzle": puzzle_json(puzzle), **check_options(options)})


def job_call(method: Literal["GET", "DELETE"], job_id: str) -> Call:
    if not job_id or "/" in job_id:
        raise ValueError(f"not a job id: {job_id!r}")
    return Call(method, f"/v1/jobs/{job_id}", idempotent=True)


def get_call(path: str, *, retry: bool = True) -> Call:
    return Call("GET", path, idempotent=True, retry=retry)


@dataclass(frozen=True)
class Settings:
    """What both clients are configured with; built once from the constructor's arguments."""

    base_url: str
    headers: dict[str, str]
    timeout: httpx.Timeout
    retry: Retry

    @classmethod
    def build(
        cls,
        base_url: str,
        api_key: str | None,
        timeout: float | httpx.Timeout | None,
        retry: Retry | bool,
        headers: Mapping[str, str] | None,
    ) -> Settings:
        """``api_key`` goes out as ``Authorization: Bearer <key>`` (default: ``$EQR_API_KEY``)."""
        sent = {"User-Agent": f"eqr-client/{__version__}", **(headers or {})}
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        if key:
            sent["Authorization"] = f"Bearer {key}"
        if timeout is None:
            timeout = DEFAULT_TIMEOUT
        elif not isinstance(timeout, httpx.Timeout):
            timeout = httpx.Timeout(timeout, connect=min(float(timeout), DEFAULT_TIMEOUT.connect or timeout))
        if retry is True:
            retry = Retry()
        elif retry is False:
            retry = NO_RETRY
        return cls(base_url=base_url.rstrip("/"), headers=sent, timeout=timeout, retry=retry)

    def policy(self, call: Call) -> Retry:
        return self.retry if call.retry else NO_RETRY


def transport_error(exc: httpx.TransportError) -> EqrError:
    """An httpx failure as an SDK error; whether the request may have reached the server decides retries."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)):
        return Unreachable(f"cannot connect: {exc or type(exc).__name__}", request_sent=False)
    if isinstance(exc, httpx.TimeoutException):
        return Timeout(f"no answer within the client timeout ({type(exc).__name__})")
    return Unreachable(f"the connection broke: {exc or type(exc).__name__}", request_sent=True)


def response_error(response: httpx.Response) -> EqrError:
    """The error a non-2xx response stands for (its body must have been read)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return error_from_body(
        body, status=response.status_code, retry_after=parse_retry_after(response.headers.get("Retry-After"))
    )


def decode(response: httpx.Response, model: type[M]) -> M:
    """A successful response's body as ``model``; a body of another shape is a :class:`ServerError`."""
    try:
        return model.model_validate_json(response.content)
    except ValueError as exc:
        where = response.request.url.path
        raise ServerError(f"unexpected response to {where}: {exc}", status=response.status_code) from exc


class SSEDecoder:
    """Server-sent events from a stream of lines (``event:`` / ``data:`` fields, blank line ends one)."""

    def __init__(self) -> None:
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        """Take one line (without its newline); return ``(event, data)`` when it completes an event."""
        if not line:
            done = (self._event, "\n".join(self._data)) if self._data else None
            self._event, self._data = "message", []
            return done
        if line.startswith(":"):
            return None  # comment / keep-alive
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


def stream_item(event: str, data: str) -> IterationEvent | SolveResult | None:
    """An SSE event as what the stream yields; an ``error`` event raises; unknown events are skipped."""
    if event == "iteration":
        return IterationEvent.model_validate_json(data)
    if event == "result":
        return SolveResult.model_validate_json(data)
    if event == "error":
        raise error_from_body(json.loads(data))
    return None  # a newer server's event type: not ours to fail on


def batch_item(item: BatchItem) -> SolveResult | EqrError:
    """One batch item as its result or, for a puzzle that failed alone, its error."""
    if item.result is not None:
        return item.result
    body = item.error.model_dump() if item.error is not None else {"code": "missing", "message": "no result"}
    return error_from_body({"error": body})


def stream_ended_early() -> EqrError:
    return Unreachable("the stream ended before the result arrived", request_sent=True)
