"""The SDK against a real ``eqr serve`` process: every call, sync and async, and error mapping, for
the Sudoku model and the maze model the server serves side by side.

The tiny random models' answers are garbage; these tests check the protocol (shapes, forms, order,
statuses, errors, cancellation), never the quality of an answer.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from eqr.server.cli import build_parser, main
from eqr.server.remote_solve import CLEAR_FRAME, solve_remote
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
from tests.live_server import API_KEY, GRID, MAZE, MAZE_SIZE, LiveServer

PUZZLES = [
    "...26.7.168..7..9.19...45..82.1...4...46.29...5...3.28..93...74.4..5..367.3.18...",
    "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3..",
    ".2.6.8...58...97......4....37....5..6.......4..8....13....2......98...36...3.6.9.",
    "8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4..",
]
FOREVER = 1_000_000  # with tolerance 0 the tiny model never converges: in flight until cancelled
MAZE_MODEL = "maze-tiny"  # the live server's second model
MAZE_CHARS = set("# SGo?")  # what a maze answer may hold: the maze's characters, the path, '?' for none


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
    """The server's ``eqr_live_slots`` gauges, summed over its models: slots holding a trajectory after
    the last engine step."""
    text = client._http.get("/metrics").raise_for_status().text
    return sum(int(float(v)) for v in re.findall(r"^eqr_live_slots(?:\{[^}]*\})? (\S+)$", text, flags=re.M))


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
    sudoku, maze = client.models()  # the first is the default model
    assert sudoku.name == live_server.model_name and sudoku.task == "sudoku" and sudoku.caps["slots"] == 8
    assert sudoku.board == {"kind": "sudoku", "rows": 9, "cols": 9}
    assert isinstance(sudoku.example, str) and len(sudoku.example) == 81
    assert maze.name == MAZE_MODEL and maze.task == "maze" and maze.caps["slots"] == 8
    assert maze.board == {"kind": "maze", "rows": MAZE_SIZE, "cols": MAZE_SIZE, "charset": "# SGo"}
    assert isinstance(maze.example, list) and len(maze.example) == MAZE_SIZE
    assert client.solve(maze.example, model=maze.name, depth=2).model == MAZE_MODEL  # the example is a puzzle
    assert client.health().status == "ok"
    assert client.wait_ready(timeout=5).capacity == 16  # 8 slots per model


def test_a_maze_answer_comes_back_in_the_form_it_was_sent(client: Client):
    as_rows = client.solve(MAZE, model=MAZE_MODEL, depth=3, seed=7)
    as_text = client.solve("\n".join(MAZE), model=MAZE_MODEL, depth=3, seed=7)
    assert as_rows.model == MAZE_MODEL and as_rows.iterations == [3] and as_rows.grid is None
    assert isinstance(as_rows.answer, list) and len(as_rows.answer) == MAZE_SIZE
    assert all(len(row) == MAZE_SIZE and set(row) <= MAZE_CHARS for row in as_rows.answer)
    assert as_text.answer == "\n".join(as_rows.answer)  # same seed, same answer, in the text form
    assert isinstance(as_rows.valid, bool) and as_rows.solved == (as_rows.status == "converged" and as_rows.valid)
    assert as_rows.board() == as_text.board() == "\n".join(as_rows.answer)  # rows, no Sudoku boxes
    assert [r.answer for r in client.solve_many([MAZE, MAZE], model=MAZE_MODEL, depth=3, seed=7)] == [
        as_rows.answer
    ] * 2


def test_maze_puzzle_errors_name_their_cells(client: Client):
    two_starts = [MAZE[0], MAZE[1], MAZE[2], MAZE[3], "#S  G"]
    with pytest.raises(PuzzleError) as info:
        client.solve(two_starts, model=MAZE_MODEL)
    assert info.value.status == 422 and info.value.cells == [(0, 0), (4, 1)] and "r1c1, r5c2" in info.value.message
    items = client.solve_batch([MAZE, MAZE[:-1]], model=MAZE_MODEL, depth=2)
    assert isinstance(items[0], SolveResult) and isinstance(items[0].answer, list)
    assert isinstance(items[1], PuzzleError) and items[1].field == "puzzles.1" and "5x5" in items[1].message
    with pytest.raises(PuzzleError):
        client.solve(MAZE, depth=2)  # the default model is Sudoku's: rows are not a Sudoku
    with pytest.raises(NotFound) as unknown:
        client.solve(MAZE, model="maze-huge")
    assert unknown.value.code == "model_not_found" and MAZE_MODEL in unknown.value.message


def test_a_maze_stream_shows_the_board_rows(client: Client):
    items = list(client.stream(MAZE, model=MAZE_MODEL, depth=5))
    events, result = items[:-1], items[-1]
    assert events and all(isinstance(e, IterationEvent) for e in events)
    assert all(isinstance(e.board, list) and len(e.board) == MAZE_SIZE for e in events)
    assert all(set("".join(e.board)) <= MAZE_CHARS for e in events)
    assert isinstance(result, SolveResult) and result.iterations == [5] and isinstance(result.answer, list)
    as_text = client.stream("\n".join(MAZE), model=MAZE_MODEL, depth=3)
    text_events = [e for e in as_text if isinstance(e, IterationEvent)]
    assert text_events and all(isinstance(e.board, str) and e.board.count("\n") == 4 for e in text_events)


async def test_the_async_client_solves_mazes(live_server: LiveServer):
    async with AsyncClient(live_server.url, timeout=30) as client:
        one = await client.solve(MAZE, model=MAZE_MODEL, depth=3, seed=2)
        (again,) = await client.solve_many([MAZE], model=MAZE_MODEL, depth=3, seed=2)
        assert isinstance(one.answer, list) and again.answer == one.answer
        job = await client.submit(MAZE, model=MAZE_MODEL, depth=3)
        assert (await client.wait(job.id, timeout=20)).model == MAZE_MODEL


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


@pytest.mark.parametrize("model", [0, 1], ids=["sudoku", "maze"])
def test_solve_json_has_one_shape_offline_through_the_server_and_over_http(
    live_server: LiveServer, capsys: pytest.CaptureFixture[str], model: int
):
    """``eqr solve --json`` prints the HTTP response's shape (``answer`` the board in the puzzle's form, not
    token ids), offline and with ``--server`` alike; with the same seed the three agree but for the id
    and the timings."""
    name, folder = live_server.model_names[model], live_server.folders[model]
    puzzle = [PUZZLES[0], "\n".join(MAZE)][model]
    flags = ["--depth", "3", "--breadth", "2", "--seed", "5", "--json"]
    assert main(["solve", puzzle, "--model", str(folder), *flags]) == 0
    offline = json.loads(capsys.readouterr().out)
    assert main(["solve", puzzle, "--server", live_server.url, "--model", name, *flags]) == 0
    remote = json.loads(capsys.readouterr().out)
    body = {"puzzle": puzzle, "model": name, "depth": 3, "breadth": 2, "seed": 5}
    http = httpx.post(f"{live_server.url}/v1/solve", json=body, timeout=30).raise_for_status().json()
    assert set(offline) == set(remote) == set(http)
    for doc in (offline, remote):
        assert {k: v for k, v in doc.items() if k not in ("id", "timings")} == {
            k: v for k, v in http.items() if k not in ("id", "timings")
        }
    assert offline["model"] == name and isinstance(offline["answer"], str) and offline["iterations"] == [3, 3]


def test_cli_solves_a_maze_through_the_server(
    live_server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    maze_text = "\n".join(MAZE)
    assert main(["solve", maze_text, "--server", live_server.url, "--model", MAZE_MODEL, "--depth", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    board, status = lines[:MAZE_SIZE], lines[MAZE_SIZE:]
    assert all(len(row) == MAZE_SIZE and set(row) <= MAZE_CHARS for row in board)  # the answer's rows
    assert len(status) == 1 and "status: max_iterations  iterations: 3" in status[0]
    assert f"model: {MAZE_MODEL}" in status[0] and re.search(r"valid: (yes|no) ", status[0])
    assert "------+-------+------" not in "\n".join(lines)

    file = tmp_path / "maze.txt"
    file.write_text(maze_text + "\n")  # a file names the puzzle: a maze is easier written in one
    argv = ["solve", str(file), "--server", live_server.url, "--model", MAZE_MODEL, "--depth", "3", "--stream"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    frame = r"^iteration (\d+)  residual \S+  live trajectories [01]  trajectory 0(  ended: depth)?\n((?:.*\n){5})"
    frames = re.findall(frame, out, flags=re.M)
    assert [int(it) for it, _, _ in frames] == [1, 2, 3]  # each iteration, the last one as it ended
    assert [ended for _, ended, _ in frames] == ["", "", "  ended: depth"]
    assert all(len(row) == MAZE_SIZE for _, _, board in frames for row in board.splitlines())
    assert "status: max_iterations  iterations: 3" in out

    assert main(["solve", "S#G", "--server", live_server.url, "--model", MAZE_MODEL]) == 2
    assert "5x5" in capsys.readouterr().err
    assert main(["solve", maze_text, "--server", live_server.url, "--model", "maze-huge"]) == 2
    assert MAZE_MODEL in capsys.readouterr().err


def test_a_task_without_rules_has_no_verdict(grid_server: LiveServer, capsys: pytest.CaptureFixture[str]):
    puzzle = ["x..y", ".xy.", "...."]
    with Client(grid_server.url, timeout=30) as client:
        (model,) = client.models()
        assert model.task == "grid" and model.board == {"kind": "grid", **GRID}
        result = client.solve(puzzle, depth=2)
    assert result.valid is None and not result.solved and result.grid is None  # nothing vouches for it
    assert len(result.answer) == GRID["rows"] and all(set(row) <= set(GRID["charset"] + "?") for row in result.answer)

    assert main(["solve", "\n".join(puzzle), "--server", grid_server.url, "--depth", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [len(row) for row in lines[: GRID["rows"]]] == [GRID["cols"]] * GRID["rows"]
    assert len(lines) == GRID["rows"] + 1 and "  valid: n/a  " in lines[-1]


class Terminal(io.StringIO):
    """Output that says it is a terminal, so the streamed boards are redrawn in place."""

    def isatty(self) -> bool:
        return True


def test_cli_redraws_a_maze_frame_in_place_on_a_terminal(live_server: LiveServer):
    argv = ["solve", "\n".join(MAZE), "--server", live_server.url, "--model", MAZE_MODEL, "--depth", "4", "--stream"]
    out = Terminal()
    assert solve_remote(build_parser().parse_args(argv), out=out) == 0
    text = out.getvalue()
    frames = text.count("iteration ")
    assert frames >= 2 and text.count(CLEAR_FRAME.format(lines=1 + MAZE_SIZE)) == frames  # each frame erased
    assert text.endswith("model: " + MAZE_MODEL + "\n")  # then the summary, left on the screen


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
