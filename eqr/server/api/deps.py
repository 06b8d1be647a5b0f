"""FastAPI dependencies: the app's settings, broker and metrics, looked up per request.

They live on ``app.state`` (set by ``create_app`` and its lifespan) rather than in globals, so tests
can run several apps side by side.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from eqr.server.api.errors import ApiError, model_not_found
from eqr.server.broker.base import Broker
from eqr.server.metrics import Metrics
from eqr.server.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def get_broker(request: Request) -> Broker:
    broker = request.app.state.broker
    if broker is None:
        raise ApiError(503, "not_ready", "the model is not loaded yet", headers={"Retry-After": "1"})
    return broker


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
BrokerDep = Annotated[Broker, Depends(get_broker)]


def require_model(requested: str | None, broker: Broker) -> None:
    """A request naming a model must name the served one (404 otherwise); omitting it is fine."""
    if requested is not None and requested != broker.card.name:
        raise model_not_found(requested, broker.card.name)
