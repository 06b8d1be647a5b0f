"""The blocking client: :class:`Client`.

It is thread-safe (one connection pool shared by all threads), which is also how
:meth:`Client.solve_many` gets its concurrency.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Literal, TypeVar, overload

import httpx
from pydantic import BaseModel

from eqr_client import _protocol as wire
from eqr_client.errors import EqrError, NotReady, Timeout, Unreachable
from eqr_client.puzzle import PuzzleInput
from eqr_client.retry import Retry
from eqr_client.types import BatchResult, Health, IterationEvent, Job, ModelInfo, ModelList, Readiness, SolveResult

if TYPE_CHECKING:  # typing_extensions only for type checkers: Unpack and Self are 3.11+ in typing
    from typing_extensions import Self, Unpack

M = TypeVar("M", bound=BaseModel)


class Client:
    """A connection to an eqr-serve server.

    >>> with Client("http://127.0.0.1:8000") as client:          # doctest: +SKIP
    ...     print(client.solve(puzzle, depth=64).board())

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8000``.
        api_key: sent as ``Authorization: Bearer <key>``; default ``$EQR_API_KEY``, if set.
        timeout: seconds (or an ``httpx.Timeout``) per HTTP request; connecting gets at most 5 s.
            For a streamed solve it bounds the wait *between* events, not the whole solve.
        retry: a :class:`Retry` policy, ``True`` for the default one, ``False`` for none.
        concurrency: default number of requests :meth:`solve_many` keeps in flight.
        headers: extra headers on every request.
        transport: an httpx transport (tests, proxies, custom TLS).
    """

    def __init__(
        self,
        base_url: str = wire.DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        retry: Retry | bool = True,
        concurrency: int = 8,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._settings = wire.Settings.build(base_url, api_key, timeout, retry, headers)
        self.concurrency = concurrency
        self._http = httpx.Client(
            base_url=self._settings.base_url,
            headers=self._settings.headers,
            timeout=self._settings.timeout,
            transport=transport,
        )

    # -- lifecycle ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- solving ------------------------------------------------------------------------------------

    def solve(self, puzzle: PuzzleInput, **options: Unpack[wire.SolveOptions]) -> SolveResult:
        """Solve one puzzle and wait for the answer.

        Raises :class:`~eqr_client.PuzzleError` (with ``cells``) for a bad puzzle; retries on 429/503.
        """
        return self._call(wire.solve_call(puzzle, options), SolveResult)

    @overload
    def solve_many(
        self,
        puzzles: Sequence[PuzzleInput],
        *,
        concurrency: int | None = ...,
        return_exceptions: Literal[False] = ...,
        **options: Unpack[wire.SolveOptions],
    ) -> list[SolveResult]: ...

    @overload
    def solve_many(
        self,
        puzzles: Sequence[PuzzleInput],
        *,
        concurrency: int | None = ...,
        return_exceptions: Literal[True],
        **options: Unpack[wire.SolveOptions],
    ) -> list[SolveResult | EqrError]: ...

    def solve_many(
        self,
        puzzles: Sequence[PuzzleInput],
        *,
        concurrency: int | None = None,
        return_exceptions: bool = False,
        **options: Unpack[wire.SolveOptions],
    ) -> list[SolveResult] | list[SolveResult | EqrError]:
        """Solve many puzzles, at most ``concurrency`` at a time; results come back in input order.

        One request per puzzle, so each is retried on its own and the server batches them with
        everyone else's work. The first error (in input order) is raised and the puzzles not yet
        started are dropped, unless ``return_exceptions`` puts each error in its puzzle's place.
        """
        calls = [wire.solve_call(p, options) for p in puzzles]  # bad input fails before any request
        workers = max(1, min(concurrency or self.concurrency, len(calls) or 1))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eqr-solve")
        try:
            futures: list[Future[SolveResult]] = [pool.submit(self._call, c, SolveResult) for c in calls]
            results: list[SolveResult | EqrError] = []
            for future in futures:
                try:
                    results.append(future.result())
                except EqrError as exc:
                    if not return_exceptions:
                        raise
                    results.append(exc)
            return results
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def solve_batch(
        self, puzzles: Sequence[PuzzleInput], **options: Unpack[wire.SolveOptions]
    ) -> list[SolveResult | EqrError]:
        """Solve puzzles in one ``POST /v1/solve/batch`` request (at most 512); input order is kept.

        A bad puzzle fails only its own place, which holds the error (a :class:`PuzzleError`).
        Cheaper than :meth:`solve_many` for many small puzzles, but all-or-nothing on retries.
        """
        batch = self._call(wire.batch_call(puzzles, options), BatchResult)
        return [wire.batch_item(item) for item in batch.results]

    def stream(self, puzzle: PuzzleInput, **options: Unpack[wire.SolveOptions]) -> SolveStream:
        """Solve while watching: iterate to get :class:`IterationEvent` s, then the :class:`SolveResult`.

        The request is sent when iteration starts. Leaving the loop early closes the connection,
        which cancels the work on the server.
        """
        return SolveStream(self, wire.solve_call(puzzle, options, stream=True))

    # -- jobs ---------------------------------------------------------------------------------------

    def submit(self, puzzle: PuzzleInput, **options: Unpack[wire.SolveOptions]) -> Job:
        """Queue a puzzle and return at once; follow it with :meth:`get`, :meth:`wait` or :meth:`cancel`."""
        return self._call(wire.submit_call(puzzle, options), Job)

    def get(self, job_id: str) -> Job:
        """A job's state, with its result once done. Raises :class:`NotFound` when unknown or expired."""
        return self._call(wire.job_call("GET", job_id), Job)

    def cancel(self, job_id: str) -> Job:
        """Cancel a pending or running job; returns its final state (a finished job is left as it is)."""
        return self._call(wire.job_call("DELETE", job_id), Job)

    def wait(self, job_id: str, *, timeout: float | None = None, poll_interval: float = 0.2) -> SolveResult:
        """Poll a job until it is done and return its result; :class:`Timeout` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job.result is not None:
                return job.result
            if deadline is not None and time.monotonic() >= deadline:
                raise Timeout(f"job {job_id} not done after {timeout} s (still {job.status})")
            time.sleep(poll_interval)

    # -- discovery and health -----------------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        """The served models, with their defaults and the server's caps."""
        return self._call(wire.get_call("/v1/models"), ModelList).models

    def health(self) -> Health:
        """Liveness (``/healthz``): the process answers, whether or not its model is loaded."""
        return self._call(wire.get_call("/healthz"), Health)

    def ready(self) -> Readiness:
        """Readiness (``/readyz``), never retried: raises :class:`NotReady` while loading or draining."""
        return self._call(wire.get_call("/readyz", retry=False), Readiness)

    def wait_ready(self, timeout: float = 30.0, poll_interval: float = 0.1) -> Readiness:
        """Wait until the server is ready (e.g. right after starting it); :class:`Timeout` otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.ready()
            except (NotReady, Unreachable) as exc:
                if time.monotonic() >= deadline:
                    raise Timeout(f"server not ready after {timeout} s: {exc}") from exc
            time.sleep(poll_interval)

    # -- plumbing -----------------------------------------------------------------------------------

    def _call(self, call: wire.Call, model: type[M]) -> M:
        response = self._send(call, stream=False)
        return wire.decode(response, model)

    def _send(self, call: wire.Call, *, stream: bool) -> httpx.Response:
        """Send with the retry policy; a response is returned only when it is 2xx (else raises)."""
        policy = self._settings.policy(call)
        request = self._http.build_request(call.method, call.path, json=call.body)
        failures = 0
        while True:
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                error = wire.transport_error(exc)
                cause: BaseException | None = exc
            else:
                if response.is_success:
                    return response
                try:
                    response.read()
                finally:
                    response.close()
                error, cause = wire.response_error(response), None
            failures += 1
            wait = policy.delay(failures, error, idempotent=call.idempotent)
            if wait is None:
                raise error from cause
            time.sleep(wait)


class SolveStream:
    """A streamed solve: iterating yields :class:`IterationEvent` s, then one :class:`SolveResult`.

    Iterate it once. ``result`` holds the result after the loop. Leaving the loop (``break``, an
    exception) closes the connection at once, and the server cancels the work; ``with client.stream(p)
    as s:`` closes it even when the loop never started.

    The stream holds its generator only by a weak reference: the generator refers to the stream, so a
    strong one both ways would be a cycle that keeps the connection open until garbage collection.
    """

    def __init__(self, client: Client, call: wire.Call) -> None:
        self._client = client
        self._call = call
        self._response: httpx.Response | None = None
        self._events: weakref.ref[Generator[IterationEvent | SolveResult, None, None]] | None = None
        self.result: SolveResult | None = None

    def __iter__(self) -> Iterator[IterationEvent | SolveResult]:
        if self._events is not None:
            raise RuntimeError("a SolveStream can be iterated only once; call client.stream() again")
        events = self._read()
        self._events = weakref.ref(events)
        return events

    def _read(self) -> Generator[IterationEvent | SolveResult, None, None]:
        self._response = self._client._send(self._call, stream=True)
        decoder = wire.SSEDecoder()
        try:
            for line in self._response.iter_lines():
                event = decoder.feed(line)
                item = wire.stream_item(*event) if event else None
                if isinstance(item, SolveResult):
                    self.result = item
                    yield item
                    return
                if item is not None:
                    yield item
        except httpx.TransportError as exc:
            raise wire.transport_error(exc) from exc
        finally:
            self._response.close()
        raise wire.stream_ended_early()

    def close(self) -> None:
        """Close the connection; the server cancels the work if it was still running."""
        events = self._events() if self._events is not None else None
        if events is not None:
            events.close()  # runs the generator's clean-up now, not when the loop lets go of it
        if self._response is not None:
            self._response.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
