"""Request and response bodies of the HTTP API (pydantic v2), with constraints and examples.

Static limits live here (types, ranges, enums); limits that depend on the running server (depth and
breadth caps) are checked by the engine and come back as the same 422 shape. A puzzle's *content* is
not validated here but by the model's task (``Task.parse``), so every puzzle mistake is reported once,
with the offending cells, in the terms of that task.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model

from eqr.model.tasks.base import Parsed, Task
from eqr.server.broker.base import JobHandle, ModelCard
from eqr.server.jobs import IterationEvent, Job, SolveParams, SolveResult, Status, field_specs

EXAMPLE_PUZZLE = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."
MAX_BATCH = 512

# from evalsets/maze/maze11-1000.jsonl: a perfect maze with a 12-step shortest path
EXAMPLE_MAZE = ["###########", "# #G#     #", "# # # ### #", "# #     #S#", "# ####### #", "# #       #",
                "# # ##### #", "# #   #   #", "# ### # ###", "#     #   #", "###########"]  # fmt: skip
ROWS = {"type": "array", "items": {"type": "string"}, "minItems": 1}
Puzzle = Annotated[
    Any,
    WithJsonSchema(
        {
            "oneOf": [
                {
                    "type": "string",
                    "description": "Sudoku: 81 cells row by row, 1-9 givens, '.' or '0' blanks. Maze and grid "
                    "tasks: the rows of the board, one per line",
                },
                {
                    **ROWS,
                    "description": "maze and grid tasks: the rows of the board; a maze is '#' walls, ' ' open "
                    "cells, one 'S' start and one 'G' goal",
                },
                {
                    "type": "array",
                    "minItems": 9,
                    "maxItems": 9,
                    "items": {
                        "type": "array",
                        "minItems": 9,
                        "maxItems": 9,
                        "items": {"type": "integer", "minimum": 0, "maximum": 9},
                    },
                    "description": "Sudoku: 9 rows of 9 numbers, 0 = blank",
                },
            ]
        }
    ),
    Field(
        description="the puzzle, in a form of the model's task: Sudoku an 81-character string or a 9×9 grid; "
        "maze and grid tasks a list of row strings or one string with a row per line",
        examples=[EXAMPLE_PUZZLE, EXAMPLE_MAZE],
    ),
]
Answer = Annotated[
    str | list[str],
    Field(
        description="the answer in the puzzle's form: Sudoku 81 characters ('.' where the model produced no "
        "digit); maze and grid tasks rows (a maze's path marked 'o'), as a list when the puzzle was a list, "
        "else one string with a row per line ('?' where the model produced no character)"
    ),
]


def finite(x: float | None) -> float | None:
    """JSON has no inf/nan; a score that is not finite (e.g. no window yet) is reported as null."""
    return x if x is not None and math.isfinite(x) else None


# -- errors ------------------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    code: str = Field(description="machine-readable error code", examples=["invalid_puzzle"])
    message: str = Field(description="what went wrong, for humans", examples=["conflicting givens: r1c3 and r1c7"])
    field: str | None = Field(None, description="the offending request field (dotted path)", examples=["puzzle"])
    cells: list[list[int]] | None = Field(None, description="offending cells as [row, col], 0-based")


class ErrorResponse(BaseModel):
    """The single error shape of every non-2xx response."""

    error: ErrorBody


# -- requests ----------------------------------------------------------------------------------------


class _Options(BaseModel):
    """Budgets and knobs of a solve; omitted values take the served model's defaults.

    Strict: a value of the wrong JSON type (``"depth": "5"``, ``"breadth": true``) is a 422, not
    quietly converted, so a client's bug surfaces at the first request rather than as odd results.
    Every field but ``model`` is a request field of :class:`~eqr.server.jobs.SolveParams`, generated
    from its declaration (:func:`option_fields`); limits that depend on the server (the engine's caps,
    quorum within the breadth a preset may set) come back from the plan's resolution as the same 422.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = Field(
        None,
        max_length=256,
        description="served model name (GET /v1/models), and with it the task; default: the first served model; "
        "others get 404",
        examples=["sudoku-small", "maze-small"],
    )

    def job(self, puzzle: Parsed, card: ModelCard, job_id: str | None = None, client: str = "") -> Job:
        """The engine job for one parsed puzzle of ``card``'s model: every request field set is forwarded;
        ``client``: who sent it (the scheduler's share per client)."""
        params = SolveParams(**self.model_dump(include=set(field_specs()), exclude_unset=True))
        named = {} if job_id is None else {"id": job_id}
        tokens = [int(t) for t in puzzle.tokens]
        return Job(tokens=tokens, params=params, model=card.name, form=puzzle.form, client=client, **named)


def option_fields() -> dict[str, Any]:
    """The request fields as pydantic fields: type (its words as a ``Literal``), bounds, description and
    default; a field with a declared default is never null (``null`` for it is a 422, as is any wrong type).

    A number must be finite (NaN, infinities and ``1e400`` are refused as such, not as above a maximum). A
    field an engine cap bounds gets no maximum here: its one limit is the server's cap (``GET /v1/models``,
    ``caps``), which the plan's resolution checks, so every value above it gets the same message."""
    made: dict[str, Any] = {}
    for name, spec in field_specs().items():
        kind: Any = Literal[spec.choices] if spec.choices else spec.kind  # type: ignore[valid-type]
        if spec.default is None:
            kind = kind | None
        limits: dict[str, Any] = {"ge": spec.lo, "le": None if spec.cap else spec.hi}
        if spec.kind is float:
            limits["allow_inf_nan"] = False
        made[name] = (kind, Field(spec.default, description=spec.doc, **limits))
    return made


SolveOptions = create_model("SolveOptions", __base__=_Options, __doc__=_Options.__doc__, **option_fields())


class SolveRequest(SolveOptions):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"puzzle": EXAMPLE_PUZZLE, "depth": 32, "seed": 1}]}
    )

    puzzle: Puzzle
    stream: bool = Field(False, description="answer text/event-stream: iteration events, then the result")


class JobRequest(SolveOptions):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"puzzle": EXAMPLE_PUZZLE}]})

    puzzle: Puzzle


class BatchRequest(SolveOptions):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"puzzles": [EXAMPLE_PUZZLE, EXAMPLE_PUZZLE], "seed": 1}]}
    )

    puzzles: list[Puzzle] = Field(min_length=1, max_length=MAX_BATCH, description="puzzles, solved concurrently")


# -- responses ---------------------------------------------------------------------------------------


class Timings(BaseModel):
    queued_ms: float = Field(description="waiting for a slot")
    compute_ms: float = Field(description="from the first slot to the result")


class SolveResponse(BaseModel):
    id: str = Field(description="request id")
    model: str
    status: Status
    answer: Answer
    grid: list[list[int]] | None = Field(None, description="Sudoku: the answer as 9 rows of 9 (0 = no digit)")
    valid: bool | None = Field(
        description="the answer obeys the task's rules and keeps the givens (reported, never steered); null "
        "when the task has no rules to check (generic grid tasks)"
    )
    iterations: list[int] = Field(description="iterations run per trajectory")
    iterations_to_convergence: int | None = Field(
        description="iteration at which the chosen trajectory's answer appeared and then held (its run adds the "
        "convergence window that confirmed it); null if it never converged"
    )
    agreement: float = Field(description="share of trajectories agreeing with the answer")
    convergence_score: float | None = Field(
        description="mean logit change over the last 3 iterations (lower = settled)"
    )
    timings: Timings
    seed: int | None = Field(None, description="the seed used (drawn at random when none was given)")
    error: str | None = Field(None, description="why the engine failed (status failed only)")
    verified: bool | None = Field(
        None, description="verified mode: the answer passed the task's rules; null when not in verified mode"
    )
    restarts: int = Field(0, description="verified mode: fresh trajectories started after failed answers")

    @classmethod
    def from_result(cls, result: SolveResult, card: ModelCard) -> SolveResponse:
        """The response of ``card``'s model: its task shows the answer in the puzzle's form."""
        return cls.of(result, card.name, card.solver_task)

    @classmethod
    def of(cls, result: SolveResult, model: str, task: Task) -> SolveResponse:
        """The response to ``result`` from ``model``, whose ``task`` shows the answer in the puzzle's form:
        the one shape of a result, over HTTP and from ``eqr solve --json`` (offline too)."""
        return cls(
            id=result.request_id,
            model=model,
            status=result.status,
            **task.answer_fields(result.answer, result.form or None),
            valid=result.valid,
            iterations=list(result.iterations),
            iterations_to_convergence=result.iterations_to_convergence,
            agreement=finite(result.agreement) or 0.0,
            convergence_score=finite(result.convergence_score),
            timings=Timings(queued_ms=result.queued_ms, compute_ms=result.compute_ms),
            seed=result.seed,
            error=result.error,
            verified=result.verified,
            restarts=result.restarts,
        )


class IterationData(BaseModel):
    """Payload of an SSE ``iteration`` event: one trajectory's state. Every ``stream_every`` iterations the
    request's most settled running trajectory; and each trajectory's last iteration as it leaves with its
    answer (``ended`` set), so a client sees every trajectory, and every restart, end."""

    id: str
    iteration: int = Field(description="the trajectory's iterations so far (a restart counts from 1 again)")
    board: Answer = Field(
        description="the trajectory's current board, as `answer` shows it: Sudoku 81 characters ('.' "
        "undecided), maze and grid tasks rows in the puzzle's form"
    )
    residual: float | None
    live_trajectories: int = Field(description="the request's trajectories still running")
    trajectory: int = Field(
        description="which trajectory: its index in the request, in seed order (its place in the result's "
        "`iterations`)"
    )
    restart: int = Field(description="verified mode: 0 for the breadth's trajectories, n for the n-th restart")
    ended: Literal["converged", "halted", "depth"] | None = Field(
        description="set on the trajectory's last iteration: it converged, the learned halting head stopped it, "
        "or it ran its depth; null while it runs (a trajectory stopped because the request ended has no last "
        "event: the result follows)"
    )
    verified: bool | None = Field(
        description="verified mode, on a trajectory's last iteration: its answer passed the task's rules (a "
        "restart follows one that did not); else null"
    )

    @classmethod
    def from_event(cls, event: IterationEvent, card: ModelCard, form: str) -> IterationData:
        return cls(
            id=event.request_id,
            iteration=event.iteration,
            board=card.solver_task.board(event.board, form or None),
            residual=finite(event.residual),
            live_trajectories=event.live_trajectories,
            trajectory=event.trajectory,
            restart=event.restart,
            ended=event.ended,
            verified=event.verified,
        )


class JobView(BaseModel):
    id: str
    status: Literal["pending", "running", "done", "cancelled"] = Field(
        description="pending (queued), running, then done or cancelled (both final; cancelled: by DELETE or a "
        "shutdown, with the best answer reached so far as the result)"
    )
    result: SolveResponse | None = Field(None, description="present once the job is done or cancelled")

    @classmethod
    def from_handle(cls, handle: JobHandle, cards: dict[str, ModelCard]) -> JobView:
        """``cards``: the served models; the result names the one it came from."""
        result = handle.peek()
        card = None if result is None else cards.get(result.model) or next(iter(cards.values()), None)
        return cls(
            id=handle.id,
            status=handle.state.value,
            result=None if result is None or card is None else SolveResponse.from_result(result, card),
        )


class BatchItem(BaseModel):
    index: int = Field(description="position in the request's `puzzles`")
    result: SolveResponse | None = None
    error: ErrorBody | None = None


class BatchResponse(BaseModel):
    model: str
    results: list[BatchItem] = Field(description="one item per puzzle, in input order")


class ModelInfo(BaseModel):
    name: str
    task: str = Field(description="the task, which fixes the puzzle and answer forms", examples=["sudoku", "maze"])
    board: dict[str, Any] = Field(
        description="the task's board: kind (sudoku, maze, grid), rows, cols and, for character grids, the charset"
    )
    example: Any = Field(description="a puzzle of this model's task, in its first form")
    arch: dict[str, Any] = Field(description="architecture summary")
    defaults: dict[str, Any] = Field(description="values used when a request omits them")
    caps: dict[str, Any] = Field(description="server limits (depth, breadth, slots, queue)")
    accuracy: dict[str, Any] | None = Field(None, description="measured at training time, if recorded")
    presets: list[str] = Field(
        description="the presets this model takes (its folder's `inference.presets`): a request naming another "
        "is a 422, since a preset's values (the paper's noise 0.5) can be far from what the model was trained with"
    )
    workers: int = Field(
        description="processes serving it now: live workers in Redis mode, 1 in embedded mode; 0: served "
        "recently but no worker is live now, so requests for it get 503 model_unavailable until one is back"
    )

    @classmethod
    def from_card(cls, card: ModelCard, workers: int) -> ModelInfo:
        task = card.solver_task
        return cls(
            workers=workers,
            name=card.name,
            task=card.task,
            board=task.render(),
            example=task.example(),
            arch=card.arch,
            defaults=card.defaults,
            caps=card.caps,
            accuracy=card.accuracy,
            presets=list(card.defaults.get("presets", ())),
        )


class ModelList(BaseModel):
    default: str = Field(description="the model of a request that names none (listed first when known here)")
    models: list[ModelInfo]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    queue_depth: int
    live_slots: int
    capacity: int
    in_flight: int
    models: dict[str, int] = Field(
        description="live workers per model (embedded mode: 1); 0: served recently, no worker live now"
    )
