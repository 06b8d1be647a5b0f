"""``POST /v1/solve`` (JSON or an SSE stream) and ``POST /v1/solve/batch``."""

from __future__ import annotations

from fastapi import APIRouter, Request

from eqr.model.tasks.errors import PuzzleError
from eqr.server.api.deps import BrokerDep, JsonBody, SettingsDep, allow_priority, client_of, model_card
from eqr.server.api.errors import as_api_error, engine_failed
from eqr.server.api.schemas import BatchItem, BatchRequest, BatchResponse, ErrorResponse, SolveRequest, SolveResponse
from eqr.server.api.streaming import EventStream, results_or_cancel, solve_events
from eqr.server.broker.base import JobHandle, Overloaded
from eqr.server.jobs import Status

router = APIRouter(prefix="/v1", tags=["solve"])

ERRORS = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        404: "unknown model",
        413: "body too large",
        415: "body not declared as JSON (Content-Type: application/json)",
        422: "bad puzzle (with cells) or bad parameter (with field)",
        429: "queue full; see Retry-After",
        503: "not ready or draining",
    }.items()
}


SSE_FORMAT = """Server-sent events, each `id: <n>` (1, 2, ...), `event: <name>`, `data: <one line of JSON>`:

- `iteration` (every `stream_every` iterations, the most settled running trajectory; and each trajectory's last
  iteration as it leaves with its answer): the IterationData schema, `{"id", "iteration", "board", "residual",
  "live_trajectories", "trajectory", "restart", "ended", "verified"}`: the request id, that trajectory's
  iterations so far, its board as `answer` shows it (Sudoku: 81 characters, '.' undecided; maze and grid tasks:
  rows in the puzzle's form), its latent residual (null before the second iteration), the request's trajectories
  still running, which trajectory (its index) and which restart of verified mode (0: none), and on its last
  iteration why it ended (converged, halted, depth) and whether its answer verified;
- `result` (last): the SolveResponse schema, as the JSON answer of a solve without `stream`;
- `error` (last, instead of `result`): the ErrorResponse schema.

While no event is due (queued, or between sparse events) a comment `: pending` or `: running` is sent every
EQR_SSE_HEARTBEAT_S seconds (15); clients ignore comment lines."""
SSE_CONTENT = {
    "schema": {"type": "string", "description": SSE_FORMAT},
    "example": 'id: 1\nevent: iteration\ndata: {"id":"4f1c...","iteration":1,"board":"..3.2.6..9...",'
    '"residual":null,"live_trajectories":1,"trajectory":0,"restart":0,"ended":null,"verified":null}\n\n',
}


@router.post(
    "/solve",
    response_model=SolveResponse,
    responses={
        **ERRORS,
        200: {"content": {"text/event-stream": SSE_CONTENT}, "description": "result, or an SSE stream"},
    },
    dependencies=[JsonBody],
    summary="Solve one puzzle",
)
async def solve(
    body: SolveRequest, request: Request, broker: BrokerDep, settings: SettingsDep
) -> SolveResponse | EventStream:
    """Solve and answer the result; with ``"stream": true`` answer ``text/event-stream`` instead:
    ``event: iteration`` every ``stream_every`` iterations and at each trajectory's end, then ``event: result``
    (or ``event: error``).
    A client that disconnects cancels the work."""
    card = model_card(body.model, broker)
    allow_priority(request, body.priority)
    job = body.job(card.solver_task.parse(body.puzzle), card, client=client_of(request))
    handle = await broker.submit(job, stream=body.stream)
    if body.stream:
        events = solve_events(handle, card, job.form, settings.sse_heartbeat_s)
        return EventStream(events, on_close=handle.cancel)
    (result,) = await results_or_cancel([handle], request.receive)
    if result.status is Status.FAILED:
        raise engine_failed(result)
    return SolveResponse.from_result(result, card)


@router.post(
    "/solve/batch",
    response_model=BatchResponse,
    responses=ERRORS,
    dependencies=[JsonBody],
    summary="Solve many puzzles",
)
async def solve_batch(body: BatchRequest, request: Request, broker: BrokerDep) -> BatchResponse:
    """Solve ``puzzles`` concurrently with shared parameters. A bad puzzle or a full queue fails only
    its own item (``error`` instead of ``result``); results come back in input order."""
    card = model_card(body.model, broker)
    allow_priority(request, body.priority)
    items: list[BatchItem] = []
    handles: dict[int, JobHandle] = {}
    try:
        for index, puzzle in enumerate(body.puzzles):
            try:
                job = body.job(card.solver_task.parse(puzzle), card, client=client_of(request))
                handles[index] = await broker.submit(job)
            except (PuzzleError, Overloaded) as exc:
                error = as_api_error(exc).body().model_copy(update={"field": f"puzzles.{index}"})
                items.append(BatchItem(index=index, error=error))
    except BaseException:
        # a request-wide problem (bad parameter, draining): nothing of this batch may keep running
        for handle in handles.values():
            handle.cancel()
        raise
    results = await results_or_cancel(list(handles.values()), request.receive)
    for index, result in zip(handles, results, strict=True):
        if result.status is Status.FAILED:
            items.append(BatchItem(index=index, error=engine_failed(result).body()))
        else:
            items.append(BatchItem(index=index, result=SolveResponse.from_result(result, card)))
    items.sort(key=lambda item: item.index)
    return BatchResponse(model=card.name, results=items)
