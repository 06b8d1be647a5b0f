"""FastAPI dependencies: the app's settings, broker and metrics, looked up per request.

They live on ``app.state`` (set by ``create_app`` and its lifespan) rather than in globals, so tests
can run several apps side by side.
"""

from __future__ import annotations

from email.message import Message
from typing import Annotated

from fastapi import Depends, Request

from eqr.server.api.errors import ApiError
from eqr.server.broker.base import Broker, ModelCard
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


def is_json(content_type: str | None) -> bool:
    """``application/json`` or ``application/<anything>+json``, parameters (charset) allowed: the types
    FastAPI itself decodes as JSON; any other body would reach validation as bytes."""
    if not content_type:
        return False
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def require_json(request: Request) -> None:
    """415 for a body that is not declared JSON, instead of a 422 about the body not being a dictionary."""
    content_type = request.headers.get("content-type")
    if not is_json(content_type):
        sent = f"{content_type!r}" if content_type else "no Content-Type"
        message = f"the request body must be JSON: send 'Content-Type: application/json' (got {sent})"
        raise ApiError(415, "unsupported_media_type", message)


JsonBody = Depends(require_json)


def client_of(request: Request) -> str:
    """Who sent ``request``, as the guard named it for the rate limits ("key:<fingerprint>" or "ip:<address>")."""
    return str(request.scope.get("state", {}).get("client", ""))


def allow_priority(request: Request, priority: int) -> None:
    """A request's ``priority`` may not exceed its API key's ``max_priority`` (keys file); 422 naming both."""
    key = request.scope.get("state", {}).get("api_key")
    cap = request.app.state.key_ring.limits[key].max_priority if key is not None else None
    if cap is not None and priority > cap:
        message = f"priority {priority} is above this API key's max_priority of {cap}"
        raise ApiError(422, "invalid_request", message, field="priority")


def model_card(requested: str | None, broker: Broker) -> ModelCard:
    """The card of the model a request names (none: the default) if it can take work: the broker's
    ``UnknownModel`` (404 naming the known ones) or ``Unavailable`` (503) otherwise."""
    return broker.card(requested)
