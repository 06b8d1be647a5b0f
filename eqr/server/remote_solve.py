"""``eqr solve --server URL``: solve through a running server with the SDK, optionally watching it converge.

Kept out of ``cli.py`` so the offline path stays as it is and this one imports neither torch nor the
model: a remote solve needs only the client.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from eqr.server.flags import request_fields
from eqr_client import Client, EqrError, IterationEvent, NotFound, SolveResult, format_board
from eqr_client.errors import BadRequest, PuzzleError

CLEAR_FRAME = "\x1b[{lines}F\x1b[J"  # cursor up to the frame's first line, erase to the end of the screen


def solve_remote(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Solve ``args.puzzle`` on ``args.server``; exit status 2 for a bad request, 1 when the server failed."""
    out = out or sys.stdout
    options: dict[str, Any] = {"model": args.model, **request_fields(args)}
    try:
        with Client(args.server, api_key=args.api_key) as client:
            if args.stream:
                result = _watch(client, args.puzzle, options, out, as_json=args.json)
            else:
                result = client.solve(args.puzzle, **options)
    except EqrError as exc:
        print(f"eqr solve: {_describe(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, (BadRequest, NotFound)) else 1
    if args.json:
        print(result.model_dump_json(), file=out)
    else:
        print(summary(result), file=out)
    return 0


def _watch(client: Client, puzzle: str, options: dict[str, Any], out: TextIO, *, as_json: bool) -> SolveResult:
    """Stream the solve: JSON lines with ``--json``; else one board per event, redrawn in place on a terminal."""
    redraw = not as_json and out.isatty()
    drawn = 0
    stream = client.stream(puzzle, **options)
    with stream:
        for item in stream:
            if not isinstance(item, IterationEvent):
                continue  # the result: always last, and kept in stream.result
            if as_json:
                print(item.model_dump_json(), file=out)
                continue
            frame = frame_text(item)
            if redraw and drawn:
                out.write(CLEAR_FRAME.format(lines=drawn))
            print(frame, file=out, end="\n" if redraw else "\n\n", flush=True)
            drawn = frame.count("\n") + 1
    if stream.result is None:  # the stream ends with its result or raises; this guards the invariant
        raise EqrError("the stream ended without a result")
    if redraw and drawn:
        out.write(CLEAR_FRAME.format(lines=drawn))
    return stream.result


def frame_text(event: IterationEvent) -> str:
    """One streamed board under its progress line (the trajectory, and whether it just ended): a Sudoku
    boxed, a maze or grid as its rows."""
    residual = "n/a" if event.residual is None else f"{event.residual:.3g}"
    which = f"trajectory {event.trajectory}" + (f" (restart {event.restart})" if event.restart else "")
    end = f"  ended: {event.ended}" if event.ended else ""
    if event.verified is not None:
        end += "  verified" if event.verified else "  not verified"
    return (
        f"iteration {event.iteration}  residual {residual}  live trajectories {event.live_trajectories}  "
        f"{which}{end}\n{format_board(event.board)}"
    )


def summary(result: SolveResult) -> str:
    """The same report as the offline solve: board, the answer on one line to copy when it has such a
    form (Sudoku's 81 characters; a maze's rows are the board already), one status line."""
    converged = result.iterations_to_convergence
    when = f" (converged at {converged})" if converged is not None else ""
    one_line = isinstance(result.answer, str) and "\n" not in result.answer
    answer = f"{result.answer}\n" if one_line else ""
    valid = {True: "yes", False: "no", None: "n/a"}[result.valid]  # n/a: the task has no rules to check
    return (
        f"{result.board()}\n{answer}"
        f"status: {result.status}  iterations: {max(result.iterations, default=0)}{when}  "
        f"valid: {valid}  breadth: {len(result.iterations)} (agreement {result.agreement:.2f})  "
        f"model: {result.model}"
    )


def _describe(exc: EqrError) -> str:
    if isinstance(exc, PuzzleError) and exc.cells:
        cells = ", ".join(f"r{r + 1}c{c + 1}" for r, c in exc.cells)
        return f"invalid puzzle: {exc.message} (cells {cells})"
    if exc.retry_after is not None:
        return f"{exc.message} (retry after {exc.retry_after:g} s)"
    return exc.message
