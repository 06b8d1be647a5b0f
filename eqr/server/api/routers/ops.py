"""Operational endpoints: liveness, readiness and Prometheus metrics (outside ``/v1``)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from eqr.server.api.deps import MetricsDep
from eqr.server.api.errors import ApiError, error_response
from eqr.server.api.schemas import ErrorResponse, Health, Ready

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Ready,
    responses={503: {"model": ErrorResponse, "description": "not ready (loading, stalled, failed) or draining"}},
    summary="Readiness: model loaded, engine making progress, not draining",
)
async def readyz(request: Request) -> Ready | Response:
    # answered directly rather than raised: a failing probe is not a rejected request
    broker = request.app.state.broker
    if broker is None:
        return error_response(ApiError(503, "not_ready", "the model is not loaded yet"))
    readiness = broker.readiness()
    if not readiness.ready:
        return error_response(ApiError(503, readiness.code, readiness.reason))
    stats = broker.stats()
    return Ready(
        queue_depth=stats.queue_depth,
        live_slots=stats.live_slots,
        capacity=stats.capacity,
        in_flight=stats.in_flight,
        models=broker.live_workers(),
    )


@router.get("/metrics", response_class=Response, summary="Prometheus metrics (text exposition format)")
async def metrics(metrics: MetricsDep) -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
