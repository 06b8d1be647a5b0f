"""``/metrics`` and ``/healthz`` for a process that has no HTTP API of its own (``eqr worker``).

A WSGI app on a daemon thread: scrapes and docker healthchecks then never wait on the worker's event
loop or its engine, and a loop that got stuck shows up as a failing health check instead of a
health check that hangs.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from eqr.server.metrics import Metrics

log = logging.getLogger(__name__)

Health = Callable[[], tuple[bool, str]]  # (healthy, why not / "ok")


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes every few seconds: not worth a log line
        pass


def ops_app(metrics: Metrics, health: Health) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            body, content_type = metrics.render()
            start_response("200 OK", [("Content-Type", content_type)])
            return [body]
        if path in ("/healthz", "/readyz"):
            ok, reason = health()
            body = json.dumps({"status": "ok" if ok else "unhealthy", "reason": reason}).encode()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found; try /metrics or /healthz\n"]

    return app


def serve_ops(host: str, port: int, metrics: Metrics, health: Health) -> WSGIServer:
    """Start serving on a daemon thread; ``port`` 0 picks a free one (``server.server_port``)."""
    server = make_server(host, port, ops_app(metrics, health), _ThreadingServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="eqr-ops-http", daemon=True).start()
    log.info("metrics and health on http://%s:%d (/metrics, /healthz)", host, server.server_port)
    return server
