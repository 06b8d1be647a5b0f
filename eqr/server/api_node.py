"""``eqr api --redis URL``: the HTTP API in front of a Redis queue, with no model of its own.

The same app and the same graceful SIGTERM as ``eqr serve``; only the broker differs (its models are
the ones the live workers advertise, and the ones they served recently; the default model is this
node's setting, by the same rule as ``eqr serve``), plus a few gauges of the shared state (Redis reachable, live
workers, stream backlog) on this node's /metrics.
"""

from __future__ import annotations

from eqr.server.api import create_app
from eqr.server.broker.redis import RedisBroker
from eqr.server.broker.redis_protocol import RedisOptions
from eqr.server.serve import run
from eqr.server.settings import Settings


def run_api(settings: Settings, options: RedisOptions) -> int:
    """Serve until SIGTERM/SIGINT; the exit status of :func:`eqr.server.serve.run`."""
    broker = RedisBroker(options, default_model=settings.default_model_name, job_ttl_s=settings.job_ttl_s)
    app = create_app(settings, broker)
    app.state.metrics.registry.register(broker.collector())
    return run(settings, app)
