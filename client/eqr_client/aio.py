"""The asyncio client: :class:`AsyncClient`, the same calls as :class:`~eqr_client.Client`, awaited."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping, Sequence
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
T = TypeVar("T")


class AsyncClient:
    """An asyncio connection to an eqr-serve server; arguments as for :class:`~eqr_client.Client`.

    >>> async with AsyncClient("http://127.0.0.1:8000") as client:   # doctest: +SKIP
    ...     results = await client.solve_many(puzzles, concurrency=16)
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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = wire.Settings.build(base_url, api_key, timeout, retry, headers)
        self.concurrency = concurrency
        self._http = httpx.AsyncClient(
            base_url=self._settings.base_url,
            headers=self._settings.headers,
            timeout=self._settings.timeout,
            transport=transport,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- solving ------------------------------------------------------------------------------------

    async def solve(self, puzzle: PuzzleInput, **options: Unpack[wire.SolveOptions]) -> SolveResult:
        """Solve one puzzle; see :meth:`eqr_client.Client.solve`."""
        return await self._call(wire.solve_call(puzzle, options), SolveResult)

    @overload
    async def solve_many(
        self,
        puzzles: Sequence[PuzzleInput],
        *,
        concurrency: int | None = ...,
        return_exceptions: Literal[False] = ...,
        **options: Unpack[wire.SolveOptions],
    ) -> list[SolveResult]: ...

    @overload
    async def solve_many(
        self,
        puzzles: Sequence[PuzzleInput],
        *,
        concurrency: int | None = ...,
        return_exceptions: Literal[True],
        **options: Unpack[wire.SolveOptions],
    ) -> list[SolveResult | EqrError]: ...

    async def solve_many(
        self,
        puzzles: Sequence[PuzzleInput],
        *,
        concurrency: int | None = None,
        return_exceptions: bool = False,
        **options: Unpack[wire.SolveOptions],
    ) -> list[SolveResult] | list[SolveResult | EqrError]:
        """Solve many puzzles, at most ``concurrency`` in flight, results in input order.

        On the first error (unless ``return_exceptions``) the requests still running are cancelled,
        which closes their connections and so cancels their work on the server.
        """
        calls = [wire.solve_call(p, options) for p in puzzles]  # bad input fails before any request
        gate = asyncio.Semaphore(max(1, concurrency or self.concurrency))

        async def one(call: wire.Call) -> SolveResult | EqrError:
            async with gate:
                try:
                    return await self._call(call, SolveResult)
                except EqrError as exc:
                    if return_exceptions:
                        return exc
                    raise

        return await _gather_or_cancel([one(c) for c in calls])

    async def solve_batch(
        self, puzzles: Sequence[PuzzleInput], **options: Unpack[wire.SolveOptions]
    ) -> list[SolveResult | EqrError]:
        """One ``POST /v1/solve/batch``; see :meth:`eqr_client.Client.solve_batch`."""
        batch = await self._call(wire.batch_call(puzzles, options), BatchResult)
        return [wire.batch_item(item) for item in batch.results]

    def stream(self, puzzle: PuzzleInput, **options: Unpack[wire.SolveOptions]) -> AsyncSolveStream:
        """Solve while watching: ``async for event in client.stream(p)`` yields :class:`IterationEvent` s,
        then the :class:`SolveResult`. Leaving the loop early closes the connection, which cancels the work."""
        return AsyncSolveStream(self, wire.solve_call(puzzle, options, stream=True))

    # -- jobs ---------------------------------------------------------------------------------------

    async def submit(self, puzzle: PuzzleInput, **options: Unpack[wire.SolveOptions]) -> Job:
        """Queue a puzzle and return at once."""
        return await self._call(wire.submit_call(puzzle, options), Job)

    async def get(self, job_id: str) -> Job:
        """A job's state, with its result once done."""
        return await self._call(wire.job_call("GET", job_id), Job)

    async def cancel(self, job_id: str) -> Job:
        """Cancel a pending or running job; returns its final state."""
        return await self._call(wire.job_call("DELETE", job_id), Job)

    async def wait(self, job_id: str, *, timeout: float | None = None, poll_interval: float = 0.2) -> SolveResult:
        """Poll a job until done and return its result; :class:`Timeout` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = await self.get(job_id)
            if job.result is not None:
                return job.result
            if deadline is not None and time.monotonic() >= deadline:
                raise Timeout(f"job {job_id} not done after {timeout} s (still {job.status})")
            await asyncio.sleep(poll_interval)

    # -- discovery and health -----------------------------------------------------------------------

    async def models(self) -> list[ModelInfo]:
        return (await self._call(wire.get_call("/v1/models"), ModelList)).models

    async def health(self) -> Health:
        return await self._call(wire.get_call("/healthz"), Health)

    async def ready(self) -> Readiness:
        """Readiness, never retried: raises :class:`NotReady` while loading or draining."""
        return await self._call(wire.get_call("/readyz", retry=False), Readiness)

    async def wait_ready(self, timeout: float = 30.0, poll_interval: float = 0.1) -> Readiness:
        """Wait until the server is ready; :class:`Timeout` otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await self.ready()
            except (NotReady, Unreachable) as exc:
                if time.monotonic() >= deadline:
                    raise Timeout(f"server not ready after {timeout} s: {exc}") from exc
            await asyncio.sleep(poll_interval)

    # -- plumbing -----------------------------------------------------------------------------------

    async def _call(self, call: wire.Call, model: type[M]) -> M:
        return wire.decode(await self._send(call, stream=False), model)

    async def _send(self, call: wire.Call, *, stream: bool) -> httpx.Response:
        """Send with the retry policy; a response is returned only when it is 2xx (else raises)."""
        policy = self._settings.policy(call)
        request = self._http.build_request(call.method, call.path, json=call.body)
        failures = 0
        while True:
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                error = wire.transport_error(exc)
                cause: BaseException | None = exc
            else:
                if response.is_success:
                    return response
                try:
                    await response.aread()
                finally:
                    await response.aclose()
                error, cause = wire.response_error(response), None
            failures += 1
            wait = policy.delay(failures, error, idempotent=call.idempotent)
            if wait is None:
                raise error from cause
            await asyncio.sleep(wait)


async def _gather_or_cancel(coros: list[Awaitable[T]]) -> list[T]:
    """``asyncio.gather`` that cancels the other tasks (and waits for them) when one fails."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class AsyncSolveStream:
    """A streamed solve for ``async for``; ``result`` holds the result afterwards.

    Leaving the loop early closes the connection (and the server cancels the work) as soon as the
    event loop runs again: asyncio closes an abandoned async generator in a task of its own. ``async
    with client.stream(p) as s:`` closes it before the block is left. The generator is held by a weak
    reference, as in :class:`~eqr_client.client.SolveStream`, so that no cycle delays this until
    garbage collection.
    """

    def __init__(self, client: AsyncClient, call: wire.Call) -> None:
        self._client = client
        self._call = call
        self._response: httpx.Response | None = None
        self._events: weakref.ref[AsyncGenerator[IterationEvent | SolveResult, None]] | None = None
        self.result: SolveResult | None = None

    def __aiter__(self) -> AsyncIterator[IterationEvent | SolveResult]:
        if self._events is not None:
            raise RuntimeError("an AsyncSolveStream can be iterated only once; call client.stream() again")
        events = self._read()
        self._events = weakref.ref(events)
        return events

    async def _read(self) -> AsyncGenerator[IterationEvent | SolveResult, None]:
        self._response = await self._client._send(self._call, stream=True)
        decoder = wire.SSEDecoder()
        try:
            async for line in self._response.aiter_lines():
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
            await self._response.aclose()
        raise wire.stream_ended_early()

    async def aclose(self) -> None:
        """Close the connection; the server cancels the work if it was still running."""
        events = self._events() if self._events is not None else None
        if events is not None:
            await events.aclose()  # runs the generator's clean-up now, not when the loop lets go of it
        if self._response is not None:
            await self._response.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
