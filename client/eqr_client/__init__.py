"""Python SDK for eqr-serve: solve Sudoku, mazes and other grid puzzles with Equilibrium Reasoners over HTTP.

Depends on httpx and pydantic only, so it installs anywhere without torch or the server.

>>> from eqr_client import Client                      # doctest: +SKIP
>>> with Client("http://127.0.0.1:8000") as client:
...     result = client.solve("..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3..")
...     print(result.board(), result.status, result.valid)
...     maze = next(m for m in client.models() if m.task == "maze")    # the model picks the task
...     print(client.solve(maze.example, model=maze.name).board())
"""

from eqr_client._protocol import SolveOptions
from eqr_client._version import __version__
from eqr_client.aio import AsyncClient, AsyncSolveStream
from eqr_client.client import Client, SolveStream
from eqr_client.errors import (
    BadRequest,
    EqrError,
    InvalidRequest,
    NotFound,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    PuzzleError,
    ServerError,
    Timeout,
    Unauthorized,
    Unreachable,
)
from eqr_client.puzzle import PuzzleInput, format_board
from eqr_client.retry import Retry
from eqr_client.types import (
    BatchItem,
    Health,
    IterationEvent,
    Job,
    ModelInfo,
    Readiness,
    SolveResult,
    Timings,
)

__all__ = [
    "AsyncClient",
    "AsyncSolveStream",
    "BadRequest",
    "BatchItem",
    "Client",
    "EqrError",
    "Health",
    "InvalidRequest",
    "IterationEvent",
    "Job",
    "ModelInfo",
    "NotFound",
    "NotReady",
    "Overloaded",
    "PayloadTooLarge",
    "PuzzleError",
    "PuzzleInput",
    "Readiness",
    "Retry",
    "ServerError",
    "SolveOptions",
    "SolveResult",
    "SolveStream",
    "Timeout",
    "Timings",
    "Unauthorized",
    "Unreachable",
    "__version__",
    "format_board",
]
