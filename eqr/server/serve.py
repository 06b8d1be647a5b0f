"""``eqr serve``: the API under uvicorn, with a graceful SIGTERM.

Plain uvicorn closes its listening socket at the first SIGTERM, so a load balancer would see
connection errors instead of a failing ``/readyz``, and it re-raises the signal on the way out (exit
status 143). Here the first SIGTERM starts a drain instead: readiness turns 503, new work gets 503,
running work finishes (bounded by ``drain_timeout_s``), and only then does uvicorn shut down, with
exit status 0. A second SIGTERM, or Ctrl-C, exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI

from eqr.server.api import create_app, drain
from eqr.server.api.app import load_models
from eqr.server.api.request_id import RequestIdFilter
from eqr.server.read_timeouts import timed_h11
from eqr.server.settings import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
STARTUP_FAILURE = 2  # any start-up failure, as for a bad flag: models that cannot load, a port in use, ...
GRACEFUL_CLOSE_S = 5.0  # after the drain: time for connections to deliver their last responses
log = logging.getLogger("eqr.server")


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose first SIGTERM drains the app before shutting down."""

    def __init__(self, config: uvicorn.Config, drain: Callable[[], Awaitable[object]]) -> None:
        super().__init__(config)
        self._drain = drain
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: list | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and not self._draining and not self.should_exit and self._loop is not None:
            self._draining = True
            # a signal handler may interrupt the loop anywhere: hand the work to the loop itself
            self._loop.call_soon_threadsafe(self._start_drain)
            return
        super().handle_exit(sig, frame)

    def _start_drain(self) -> None:
        self._drain_task = asyncio.get_running_loop().create_task(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await self._drain()
        finally:
            self.should_exit = True


def _uvicorn_log_config() -> dict:
    """uvicorn's own logging, with the request id (``-`` outside a request) at the end of each line."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["filters"] = {"request_id": {"()": RequestIdFilter}}
    for formatter in config["formatters"].values():
        formatter["fmt"] += " [%(request_id)s]"
    for handler in config["handlers"].values():
        handler["filters"] = ["request_id"]
    return config


def run(settings: Settings, app: FastAPI | None = None) -> int:
    """Serve ``app`` (default: the embedded app of ``settings``, its models loaded first) until
    SIGTERM/SIGINT; the exit status (0 after a drain, 2 when start-up failed, with one line saying why)."""
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())
    if app is None:
        from eqr.model.checkpoint import CheckpointError  # torch: only the embedded server loads models

        app = create_app(settings)
        log.info("loading %s", ", ".join(map(str, settings.model)))
        try:
            load_models(app)
        except CheckpointError as exc:
            print(f"eqr serve: {exc}", file=sys.stderr)
            return STARTUP_FAILURE
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=_uvicorn_log_config(),
        http=timed_h11(settings.header_timeout_s, settings.body_timeout_s),  # type: ignore[arg-type]
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_CLOSE_S,
    )
    server = DrainingServer(config, drain=lambda: drain(app))
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn already shut down; exit quietly
            server.run()
    except SystemExit:  # uvicorn exits 1 when it cannot bind, after logging why in one line
        if server.started:
            raise
    return 0 if server.started else STARTUP_FAILURE
