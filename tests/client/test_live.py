"""The SDK against a real ``eqr serve`` process: every call, sync and async, and error mapping.

The tiny random model's answers are garbage; these tests check the protocol (shapes, order, statuses,
errors, cancellation), never the quality of an answer.
"""

from __future__ import annotations

import asyncio
import gc
import re
import time
from collections.abc import Iterator

import pytest

from eqr.server.cli import main
from eqr_client import (
    AsyncClient,
    Client,
    InvalidRequest,
    IterationEvent,
    NotFound,
    PuzzleError,
    SolveResult,
    Unauthorized,
)
from tests.live_server import API_KEY, LiveServer

PUZZLES = [
    "...26.7.168..7..9.19...45..82.1...4...46.29...5...3.28..93...74.4..5..367.3.18...",
    "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3..",
    ".2.6.8...58...97......4....37....5..6.......4..8....13....2......98...36...3.6.9.",
    "8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4..",
]
FOREVER = 1_000_000  # with tolerance 0 the tiny model never converges: in flight until cancelled


def as_grid(puzzle: str) -> list[list[int]]:
    return [[0 if ch == "." else int(ch) for ch in puzzle[r * 9 : r * 9 + 9]] for r in range(9)]


@pytest.fixture
def client(live_server: LiveServer):
    with Client(live_server.url, timeout=30) as c:
        yield c


def wait_idle(client: Client, timeout_s: float = 10.0) -> None:
    """Until the server runs nothing: how a test sees that cancelled work really left the slots."""
    deadline = time.monotonic() + timeout_s
    while client.ready().in_flight:
        assert time.monotonic() < deadline, "work still in flight: it was not cancelled"
        time.sleep(0.05)


def test_solve_accepts_strings_and_grids(client: Client, live_server: LiveServer):
    by_string = client.solve(PUZZLES[1], depth=5, breadth=2, seed=3)
    by_grid = client.solve(as_grid(PUZZLES[1]), depth=5, breadth=2, seed=3)
    assert isinstance(by_string, SolveResult) and by_string.model == live_server.model_name
    assert by_string.status == "max_iterations" and by_string.iterations == [5, 5]
    assert len(by_string.answer) == 81 and len(by_string.grid) == 9 and by_string.timings.compute_ms >= 0
    assert by_grid.answer == by_string.answer  # same seed, same answer
    assert by_string.board().count("\n") == 10 and not by_string.solved


def test_solve_many_keeps_input_order(client: Client):
    alone = [client.solve(p, depth=4, seed=11).answer for p in PUZZLES]
    together = client.solve_many(PUZZLES, depth=4, seed=11, concurrency=3)
    assert [r.answer for r in together] == alone
    mixed = client.solve_many(
        [PUZZLES[0], "11" + "." * 79, PUZZLES[1], "x" + "." * 80], depth=3, return_exceptions=True
    )
    assert isinstance(mixed[0], SolveResult) and isinstance(mixed[2], SolveResult)
    assert isinstance(mixed[1], PuzzleError) and mixed[1].cells == [(0, 0), (0, 1)]
    assert isinstance(mixed[3], PuzzleError) and mixed[3].cells == [(0, 0)]
    with pytest.raises(PuzzleError):
        client.solve_many([PUZZLES[0], "11" + "." * 79], depth=3)


def test_solve_batch_puts_errors_in_place(client: Client):
    items = client.solve_batch([PUZZLES[0], "11" + "." * 79], depth=3)
    assert isinstance(items[0], SolveResult) and isinstance(items[1], PuzzleError)
    assert items[1].field == "puzzles.1" and items[1].cells == [(0, 0), (0, 1)]


def test_errors_are_mapped(client: Client):
    with pytest.raises(PuzzleError) as bad_puzzle:
        client.solve("5" + "." * 8 + "5" + "." * 71)
    assert bad_puzzle.value.status == 422 and bad_puzzle.value.cells == [(0, 0), (1, 0)]
    with pytest.raises(InvalidRequest) as bad_param:
        client.solve(PUZZLES[0], breadth=10_000)
    assert bad_param.value.field == "breadth" and bad_param.value.code == "invalid_request"
    with pytest.raises(NotFound):
        client.solve(PUZZLES[0], model="no-such-model")
    with pytest.raises(NotFound):
        client.get("no-such-job")
    with pytest.raises(TypeError, match="unknown solve option"):
        client.solve(PUZZLES[0], deepth=3)  # type: ignore[call-arg]


def test_jobs_submit_wait_and_cancel(client: Client):
    job = client.submit(PUZZLES[0], depth=4)
    assert job.status in ("pending", "running", "done")
    result = client.wait(job.id, timeout=20)
    assert result.id == job.id and result.iterations == [4]
    assert client.get(job.id).done

    running = client.submit(PUZZLES[1], depth=FOREVER)
    cancelled = client.cancel(running.id)
    assert cancelled.done and cancelled.status == "cancelled"
    assert cancelled.result is not None and cancelled.result.status == "cancelled"
    wait_idle(client)


def test_stream_yields_iterations_then_the_result(client: Client):
    stream = client.stream(PUZZLES[2], depth=6)
    items = list(stream)
    events, result = items[:-1], items[-1]
    assert events and all(isinstance(e, IterationEvent) for e in events)
    assert [e.iteration for e in events] == sorted(e.iteration for e in events)
    assert all(len(e.board) == 81 for e in events)
    assert isinstance(result, SolveResult) and stream.result == result and result.iterations == [6]


def test_leaving_a_stream_early_cancels_the_work(client: Client):
    with client.stream(PUZZLES[3], depth=FOREVER) as stream:
        for event in stream:
            if event.iteration >= 3:
                break
    assert stream.result is None
    wait_idle(client)


def live_slots(client: Client) -> int:
    """The server's ``eqr_live_slots`` gauge: slots holding a trajectory after the last engine step."""
    text = client._http.get("/metrics").raise_for_status().text
    return int(float(re.search(r"^eqr_live_slots (\S+)$", text, flags=re.M).group(1)))


def wait_slots_freed(client: Client, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while live_slots(client):
        assert time.monotonic() < deadline, f"{live_slots(client)} slots still live: the stream was not closed"
        time.sleep(0.05)


@pytest.fixture
def no_gc() -> Iterator[None]:
    """Garbage collection off, so a reference cycle that keeps a connection open cannot be hidden by it."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()  # a leaked stream of a failed test closes here, before the next test


def test_breaking_out_of_a_stream_loop_frees_the_slots(client: Client, no_gc: None):
    for i, _ in enumerate(client.stream(PUZZLES[3], depth=FOREVER, breadth=8)):
        if i == 2:
            assert live_slots(client) == 8
            break
    wait_slots_freed(client)

    stream = client.stream(PUZZLES[2], depth=FOREVER, breadth=8)  # kept in a variable: still closed by break
    for i, _ in enumerate(stream):
        if i == 2:
            break
    wait_slots_freed(client)
    assert stream.result is None


async def test_breaking_out_of_an_async_stream_loop_frees_the_slots(
    client: Client, live_server: LiveServer, no_gc: None
):
    async with AsyncClient(live_server.url, timeout=30) as aclient:
        i = 0
        async for _ in aclient.stream(PUZZLES[3], depth=FOREVER, breadth=8):
            i += 1
            if i == 3:
                assert live_slots(client) == 8
                break
        # waiting in a thread lets the event loop run the task that closes the abandoned async generator
        await asyncio.to_thread(wait_slots_freed, client)


def test_models_and_health(client: Client, live_server: LiveServer):
    (model,) = client.models()
    assert model.name == live_server.model_name and model.task == "sudoku" and model.caps["slots"] == 8
    assert client.health().status == "ok"
    assert client.wait_ready(timeout=5).capacity == 8


async def test_async_client(live_server: LiveServer):
    async with AsyncClient(live_server.url, timeout=30) as client:
        one = await client.solve(PUZZLES[0], depth=4, seed=5)
        many = await client.solve_many([PUZZLES[0], PUZZLES[1]], depth=4, seed=5, concurrency=2)
        assert many[0].answer == one.answer and len(many) == 2

        events = [item async for item in client.stream(PUZZLES[1], depth=4)]
        assert isinstance(events[-1], SolveResult) and all(isinstance(e, IterationEvent) for e in events[:-1])

        job = await client.submit(PUZZLES[2], depth=FOREVER)
        cancelled = await client.cancel(job.id)
        assert cancelled.result is not None and cancelled.result.status == "cancelled"
        assert (await client.wait(job.id, timeout=5)).status == "cancelled"

        with pytest.raises(PuzzleError):
            await client.solve_many([PUZZLES[0], "11" + "." * 79], depth=FOREVER, concurrency=2)
        async with client.stream(PUZZLES[3], depth=FOREVER) as stream:
            async for event in stream:
                if event.iteration >= 2:
                    break
        assert (await client.models())[0].name == live_server.model_name
    with Client(live_server.url) as sync:
        wait_idle(sync)  # the failed solve_many and the abandoned stream both cancelled their work


def test_cli_solves_through_the_server(live_server: LiveServer, capsys: pytest.CaptureFixture[str]):
    assert main(["solve", PUZZLES[0], "--server", live_server.url, "--depth", "3"]) == 0
    out = capsys.readouterr().out
    assert "status: max_iterations  iterations: 3" in out and out.count("------+-------+------") == 2

    assert main(["solve", PUZZLES[0], "--server", live_server.url, "--depth", "3", "--stream"]) == 0
    out = capsys.readouterr().out
    assert "iteration 1  residual" in out and "status: max_iterations" in out
    assert out.count("------+-------+------") >= 4  # boards while converging, then the answer

    assert main(["solve", "11" + "." * 79, "--server", live_server.url]) == 2
    assert "r1c1, r1c2" in capsys.readouterr().err


def test_the_api_key_is_sent_and_checked(keyed_server: LiveServer, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("EQR_API_KEY", raising=False)
    with Client(keyed_server.url, api_key=API_KEY) as keyed:
        assert keyed.solve(PUZZLES[0], depth=2).iterations == [2]
    for key, status in ((None, 401), ("not-the-key", 403)):
        with Client(keyed_server.url, api_key=key) as client, pytest.raises(Unauthorized) as info:
            client.solve(PUZZLES[0], depth=2)
        assert info.value.status == status
    monkeypatch.setenv("EQR_API_KEY", API_KEY)  # the default source of the key
    with Client(keyed_server.url) as from_env:
        assert from_env.models()[0].name == keyed_server.model_name
