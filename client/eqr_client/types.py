"""Typed views of the server's JSON: what every call returns.

These mirror the response bodies of eqr-serve's HTTP API but are defined here, not imported from the
server, so the SDK installs without torch or the server code. Unknown fields are ignored rather than
rejected: a newer server that adds a field must not break an older client.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from eqr_client.puzzle import format_board

Status = Literal["verified", "converged", "max_iterations", "stuck", "deadline", "cancelled", "failed"]
JobState = Literal["pending", "running", "done", "cancelled"]


class _View(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, protected_namespaces=())


class Timings(_View):
    """Where the time went on the server."""

    queued_ms: float = Field(description="waiting for a slot")
    compute_ms: float = Field(description="from the first slot to the result")


class SolveResult(_View):
    """The answer to one puzzle, with how it was reached.

    ``valid`` is reported, never steered: the model's answer is returned as is, and ``valid`` says
    whether it obeys the task's rules and keeps the givens (None: the task has no rules to check).
    """

    id: str = Field(description="request id")
    model: str
    status: Status = Field(
        description="verified (verified mode: the answer passed the rules), converged, max_iterations, stuck (verified "
        "mode with stuck_after: one wrong answer kept coming back), deadline, "
        "cancelled or failed"
    )
    answer: str | list[str] = Field(
        description="in the puzzle's form: Sudoku 81 characters ('.' where the model produced no digit); maze and "
        "grid tasks a list of rows if the puzzle was one, else one string with a row per line (a maze's path "
        "marked 'o', '?' where the model produced no character)"
    )
    grid: list[list[int]] | None = Field(None, description="Sudoku: the answer as 9 rows of 9 (0 = no digit)")
    valid: bool | None = Field(description="obeys the task's rules and keeps the givens; None: no rules to check")
    iterations: list[int] = Field(description="iterations run per trajectory")
    iterations_to_convergence: int | None = Field(None, description="iteration at which the answer settled")
    agreement: float = Field(description="share of trajectories agreeing with the answer")
    convergence_score: float | None = Field(None, description="mean logit change over the last 3 iterations")
    timings: Timings
    seed: int | None = Field(None, description="the seed used (pass it back to get the same answer)")
    error: str | None = None
    verified: bool | None = Field(None, description="verified mode: the answer passed the task's rules")
    restarts: int = Field(0, description="verified mode: fresh trajectories started after failed answers")

    @property
    def solved(self) -> bool:
        """Verified, or converged on an answer checked valid: it can be trusted without checking it yourself.

        Never true for a task without rules (``valid`` None): nothing vouches for such an answer.
        """
        return self.status in ("verified", "converged") and self.valid is True

    def board(self) -> str:
        """The answer for terminals: Sudoku as a 9×9 grid with box separators, a maze or grid as its rows."""
        return format_board(self.answer)


class IterationEvent(_View):
    """One trajectory's state in a streamed solve: every ``stream_every`` iterations the most settled running
    one, and each trajectory's last iteration as it leaves with its answer (``ended`` set)."""

    id: str
    iteration: int = Field(description="the trajectory's iterations so far (a restart counts from 1 again)")
    board: str | list[str] = Field(description="the trajectory's current board, in the form of the result's answer")
    residual: float | None = Field(None, description="how much the latent state still moves (null: not yet known)")
    live_trajectories: int
    trajectory: int = Field(0, description="which trajectory: its index (its place in the result's iterations)")
    restart: int = Field(0, description="verified mode: 0 for the breadth's trajectories, n for the n-th restart")
    ended: Literal["converged", "halted", "depth"] | None = Field(
        None, description="on the trajectory's last iteration: why it left; None while it runs"
    )
    verified: bool | None = Field(None, description="verified mode, on a last iteration: the answer passed the rules")


class Job(_View):
    """An asynchronous job; ``result`` is present once ``status`` is final: ``done`` or ``cancelled``."""

    id: str
    status: JobState
    result: SolveResult | None = None

    @property
    def done(self) -> bool:
        """Finished, whether it ran to the end or was cancelled: ``result`` is there."""
        return self.status in ("done", "cancelled")


class ErrorBody(_View):
    """The server's error shape: ``{"error": {"code", "message", "field", "cells"}}``."""

    code: str
    message: str
    field: str | None = None
    cells: list[list[int]] | None = None


class BatchItem(_View):
    """One puzzle of a batch: a ``result`` or, for that puzzle alone, an ``error``."""

    index: int
    result: SolveResult | None = None
    error: ErrorBody | None = None


class BatchResult(_View):
    model: str
    results: list[BatchItem]


class ModelInfo(_View):
    """A served model: its task and board, architecture, request defaults and the server's caps.

    ``board`` tells how to draw the task's boards: ``{"kind": "sudoku" | "maze" | "grid", "rows", "cols"}``
    and, for character grids, ``"charset"``. ``example`` is a puzzle of the task, in a form ``solve``
    takes (Sudoku an 81-character string, a maze or grid its rows).
    """

    name: str
    task: str = Field(description="sudoku, maze or grid: which puzzles the model takes")
    board: dict[str, Any]
    example: str | list[str]
    arch: dict[str, Any]
    defaults: dict[str, Any]
    caps: dict[str, Any]
    accuracy: dict[str, Any] | None = None
    presets: list[str] = Field([], description="the presets this model takes; a request naming another is refused")
    workers: int = Field(
        1, description="processes serving it now (Redis mode: live workers; 0: none live, requests get 503)"
    )


class ModelList(_View):
    default: str = Field("", description="the model of a request that names none")
    models: list[ModelInfo]


class Health(_View):
    """Liveness: the process answers."""

    status: Literal["ok"]


class Readiness(_View):
    """Readiness: the model is loaded, the engine makes progress, and the server is not draining."""

    status: Literal["ready"]
    queue_depth: int
    live_slots: int
    capacity: int
    in_flight: int
    models: dict[str, int] = Field(default_factory=dict, description="live workers per model (embedded: 1)")
