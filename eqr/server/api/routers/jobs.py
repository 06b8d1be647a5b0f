"""Async jobs: ``POST /v1/jobs`` (202 + Location), ``GET`` and ``DELETE /v1/jobs/{id}``.

Finished jobs stay readable for the server's ``job_ttl_s``, then answer 404.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, Request, Response

from eqr.server.api.deps import BrokerDep, JsonBody, allow_priority, client_of, model_card
from eqr.server.api.errors import duplicate_job_id, job_not_found
from eqr.server.api.request_id import request_id
from eqr.server.api.routers.solve import ERRORS
from eqr.server.api.schemas import ErrorResponse, JobRequest, JobView
from eqr.server.broker.base import Broker, JobHandle

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

# A cancelled job leaves its slots within one engine step; waiting this long for its final state lets
# DELETE answer with the cancelled result instead of a still-running view.
CANCEL_WAIT_S = 5.0
NOT_FOUND = {404: {"model": ErrorResponse, "description": "unknown job, or its result expired"}}


async def _find(broker: Broker, job_id: str) -> JobHandle:
    handle = await broker.get(job_id)
    if handle is None:
        raise job_not_found(job_id)
    return handle


DUPLICATE = {409: {"model": ErrorResponse, "description": "a job with this X-Request-Id exists"}}


@router.post(
    "",
    status_code=202,
    response_model=JobView,
    responses={**ERRORS, **DUPLICATE},
    dependencies=[JsonBody],
    summary="Submit a job",
)
async def submit_job(body: JobRequest, request: Request, response: Response, broker: BrokerDep) -> JobView:
    """Queue a puzzle and return at once; poll ``Location`` for the result. The job's id is the request's
    ``X-Request-Id`` (yours, or one the server made); an id already in use is a 409."""
    card = model_card(body.model, broker)
    allow_priority(request, body.priority)
    job_id = request_id(request)
    # in-process, neither get nor submit yields to the loop before the job is registered, so this cannot race;
    # across API nodes (Redis mode) the same id sent to two nodes at the same instant is not caught
    if await broker.get(job_id) is not None:
        raise duplicate_job_id(job_id)
    job = body.job(card.solver_task.parse(body.puzzle), card, job_id=job_id, client=client_of(request))
    handle = await broker.submit(job, keep=True)
    response.headers["Location"] = f"{router.prefix}/{handle.id}"
    return JobView.from_handle(handle, broker.cards)


@router.get("/{job_id}", response_model=JobView, responses=NOT_FOUND, summary="Job status and result")
async def get_job(job_id: str, broker: BrokerDep) -> JobView:
    return JobView.from_handle(await _find(broker, job_id), broker.cards)


@router.delete("/{job_id}", response_model=JobView, responses=NOT_FOUND, summary="Cancel a job")
async def cancel_job(job_id: str, broker: BrokerDep) -> JobView:
    """Cancel a pending or running job (its slots are freed within one step) and return its final state,
    ``cancelled``. A job that already finished (done, or cancelled before) is returned unchanged with 200:
    DELETE is idempotent and never discards a result; it stays readable until the TTL."""
    handle = await _find(broker, job_id)
    if handle.peek() is None:
        handle.cancel()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(handle.result(), CANCEL_WAIT_S)
    return JobView.from_handle(handle, broker.cards)
