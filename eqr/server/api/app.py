"""The application factory: routers, error handlers, body limit, and the lifespan that runs the engine.

``create_app(settings)`` serves the model folder of ``settings`` in-process (engine thread +
:class:`~eqr.server.broker.local.LocalBroker`). ``create_app(settings, broker)`` serves through a
broker built elsewhere (tests, or a Redis broker); either way the app owns the broker from start-up to
shutdown. Nothing under ``api/`` touches the engine: it only sees the :class:`Broker` interface.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from eqr.server.api.auth import KeyRing, load_api_keys
from eqr.server.api.docs import mount_docs
from eqr.server.api.errors import install_error_handlers
from eqr.server.api.guard import ClientGuard
from eqr.server.api.http_conventions import install_cors, install_gzip
from eqr.server.api.limits import BodySizeLimit
from eqr.server.api.playground import mount_playground
from eqr.server.api.ratelimit import FailureThrottle, InFlightLimiter, RateLimiter
from eqr.server.api.request_id import DOCUMENTED as REQUEST_ID_HEADER
from eqr.server.api.request_id import RequestIdMiddleware
from eqr.server.api.routers import jobs, models, ops, solve
from eqr.server.api.schemas import ErrorResponse
from eqr.server.broker.base import Broker
from eqr.server.metrics import Metrics
from eqr.server.settings import Settings

log = logging.getLogger("eqr.server")


def _load_local_broker(settings: Settings, metrics: Metrics) -> Broker:
    from eqr.server.broker.local import LocalBroker  # imports torch and the engine: only when serving locally

    return LocalBroker.from_settings(settings, metrics)


def load_models(app: FastAPI) -> None:
    """Load the app's model folders now, in the calling thread, rather than in the lifespan.

    ``eqr serve`` calls this before it binds its port, so a folder that cannot be loaded (weights
    missing, truncated, corrupted) stops it with the loader's one-line ``CheckpointError`` instead
    of a failed start-up inside uvicorn.
    """
    app.state.injected_broker = _load_local_broker(app.state.settings, app.state.metrics)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start-up: load the model off the event loop, start the broker. Shutdown: stop it.

    A SIGTERM drain (see :func:`drain`) has already let running work finish by the time shutdown runs;
    whatever is left then (Ctrl-C, or work past the drain timeout) is cancelled.
    """
    settings: Settings = app.state.settings
    metrics: Metrics = app.state.metrics
    broker = app.state.injected_broker
    if broker is None:
        log.info("loading model from %s", settings.model)
        broker = await asyncio.to_thread(_load_local_broker, settings, metrics)
    await broker.start()
    metrics.track(lambda: broker.stats().in_flight)
    app.state.broker = broker
    served = ", ".join(f"{card.name!r} ({card.task})" for card in broker.cards.values())
    log.info("serving %s; %s", served or "no model yet", app.state.key_ring.describe())
    try:
        yield
    finally:
        app.state.broker = None
        await broker.close()


async def drain(app: FastAPI) -> bool:
    """Stop admitting work (readiness turns 503, new requests 503) and wait for running work.

    Bounded by ``drain_timeout_s``; True when everything finished. Called by ``eqr serve`` on SIGTERM.
    """
    broker: Broker | None = app.state.broker
    if broker is None:
        return True
    settings: Settings = app.state.settings
    log.info("draining: admission stopped, waiting up to %.0f s for running work", settings.drain_timeout_s)
    drained = await broker.drain(settings.drain_timeout_s)
    log.info("drain %s", "complete" if drained else "timed out; remaining work will be cancelled")
    return drained


def create_app(settings: Settings | None = None, broker: Broker | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="eqr-serve",
        summary="Equilibrium Reasoners over HTTP (Sudoku, mazes, grid tasks), with continuous batching",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # mount_docs serves /docs and /redoc from installed files instead of a CDN
        redoc_url=None,
        # documents the one error shape everywhere (and replaces FastAPI's own 422 schema, which we never send)
        responses={
            422: {"model": ErrorResponse, "description": "invalid request"},
            500: {"model": ErrorResponse, "description": "internal error (no details leak)"},
        },
    )
    app.state.settings = settings
    app.state.injected_broker = broker
    app.state.broker = None
    app.state.metrics = Metrics(max_depth=settings.max_depth)
    install_error_handlers(app)
    install_gzip(app, settings)  # innermost: it compresses what the app answered
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    _install_guard(app, settings)  # refusals cost nothing else ...
    install_cors(app, settings)  # ... but CORS headers, so a page can read them ...
    app.add_middleware(RequestIdMiddleware)  # ... and a request id: the outermost layer
    for router in (solve.router, jobs.router, models.router):
        app.include_router(router, responses=GUARD_RESPONSES, dependencies=[REQUEST_ID_HEADER])
    app.include_router(ops.router)
    mount_playground(app)
    mount_docs(app)
    return app


GUARD_RESPONSES: dict[int | str, dict] = {
    401: {"model": ErrorResponse, "description": "API key missing (only when the server has keys)"},
    403: {"model": ErrorResponse, "description": "API key not valid"},
    429: {"model": ErrorResponse, "description": "queue full, rate limited or too many in flight; see Retry-After"},
}


def _install_guard(app: FastAPI, settings: Settings) -> None:
    """API keys and per-client limits on ``/v1`` (see ``guard.py``); raises ``ApiKeyError`` on bad keys."""
    keys = app.state.key_ring = KeyRing(load_api_keys(settings))
    rate = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst) if settings.rate_limit_per_s else None
    in_flight = InFlightLimiter(settings.max_in_flight_per_client) if settings.max_in_flight_per_client else None
    per_min = settings.auth_failures_per_min
    failures = FailureThrottle(per_min) if keys.enabled and per_min else None
    app.add_middleware(ClientGuard, keys=keys, rate=rate, in_flight=in_flight, auth_failures=failures)
    if keys.enabled:
        app.openapi = lambda: _with_bearer_scheme(app)  # type: ignore[method-assign]


def _with_bearer_scheme(app: FastAPI) -> dict:
    """The OpenAPI document, with the bearer key declared on every ``/v1`` operation."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        schema.setdefault("components", {})["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer"}}
        for path, operations in schema.get("paths", {}).items():
            if path.startswith("/v1/"):
                for operation in operations.values():
                    operation["security"] = [{"apiKey": []}]
    return app.openapi_schema
