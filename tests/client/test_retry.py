"""Retries, against a small scripted HTTP server that refuses (429/503) or hangs up before it answers.

A real socket server rather than a mocked transport, so connection-level failures (a dropped
connection, a refused one) are the real thing. Waits are shrunk to milliseconds by the policy.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from eqr_client import AsyncClient, Client, NotReady, Overloaded, PuzzleError, Retry, Unreachable
from eqr_client.errors import EqrError, ServerError
from tests.live_server import free_port

FAST = Retry(attempts=4, backoff=0.01, max_backoff=0.05, max_retry_after=5)
PUZZLE = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."
RESULT = {
    "id": "r1",
    "model": "stub",
    "status": "converged",
    "answer": "4" * 81,
    "grid": [[4] * 9] * 9,
    "valid": False,
    "iterations": [3],
    "iterations_to_convergence": 3,
    "agreement": 1.0,
    "convergence_score": 0.0,
    "timings": {"queued_ms": 0.1, "compute_ms": 1.0},
}
JOB = {"id": "j1", "status": "pending", "result": None}


def refusal(status: int, code: str, retry_after: str | None = "0") -> tuple:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return (status, headers, {"error": {"code": code, "message": f"{code} (stub)", "field": None, "cells": None}})


DROP = ("drop",)  # read the request, then close the connection without answering


@dataclass
class Stub:
    """Answers each request with the next scripted reply for its path; records what it received."""

    url: str = ""
    script: dict[str, list[tuple]] = field(default_factory=dict)
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def hits(self, path: str) -> int:
        return sum(1 for _, p, _ in self.seen if p == path)


@pytest.fixture
def stub() -> Iterator[Stub]:
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            state.seen.append((self.command, self.path, dict(self.headers)))
            replies = state.script.get(self.path) or [(404, {}, {"error": {"code": "not_found", "message": "?"}})]
            reply = replies.pop(0) if len(replies) > 1 else replies[0]  # the last reply repeats
            if reply == DROP:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            status, headers, body = reply
            payload = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {**headers, "Content-Type": "application/json"}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_solve_is_retried_after_429_and_503(stub: Stub):
    stub.script["/v1/solve"] = [refusal(429, "queue_full"), refusal(503, "draining"), (200, {}, RESULT)]
    with Client(stub.url, retry=FAST) as client:
        assert client.solve(PUZZLE).answer == RESULT["answer"]
    assert stub.hits("/v1/solve") == 3


async def test_async_solve_is_retried_after_429_and_503(stub: Stub):
    stub.script["/v1/solve"] = [refusal(503, "not_ready"), refusal(429, "queue_full"), (200, {}, RESULT)]
    async with AsyncClient(stub.url, retry=FAST) as client:
        assert (await client.solve(PUZZLE)).status == "converged"
    assert stub.hits("/v1/solve") == 3


def test_retry_after_is_honoured(stub: Stub):
    stub.script["/v1/solve"] = [refusal(429, "queue_full", retry_after="1"), (200, {}, RESULT)]
    started = time.monotonic()
    with Client(stub.url, retry=FAST) as client:
        client.solve(PUZZLE)
    assert time.monotonic() - started >= 1.0  # the policy's own waits are milliseconds


def test_gives_up_after_the_attempts_or_a_long_retry_after(stub: Stub):
    stub.script["/v1/solve"] = [refusal(503, "draining")]
    with Client(stub.url, retry=FAST) as client, pytest.raises(NotReady):
        client.solve(PUZZLE)
    assert stub.hits("/v1/solve") == FAST.attempts

    stub.script["/v1/jobs"] = [refusal(429, "queue_full", retry_after="120")]
    with Client(stub.url, retry=FAST) as client, pytest.raises(Overloaded) as exc:
        client.submit(PUZZLE)
    assert exc.value.retry_after == 120 and stub.hits("/v1/jobs") == 1


def test_only_idempotent_calls_are_resent_after_a_dropped_connection(stub: Stub):
    stub.script["/v1/jobs"] = [DROP, (202, {}, JOB)]
    with Client(stub.url, retry=FAST) as client:
        with pytest.raises(Unreachable) as exc:
            client.submit(PUZZLE)  # the job may exist now: submitting again could run it twice
        assert exc.value.request_sent and stub.hits("/v1/jobs") == 1

        stub.script["/v1/jobs/j1"] = [DROP, (200, {}, JOB)]
        assert client.get("j1").id == "j1"  # reading is safe to repeat
    assert stub.hits("/v1/jobs/j1") == 2


def test_client_errors_and_probes_are_not_retried(stub: Stub):
    bad = (422, {}, {"error": {"code": "invalid_puzzle", "message": "bad", "field": "puzzle", "cells": [[0, 1]]}})
    stub.script["/v1/solve"] = [bad]
    stub.script["/readyz"] = [refusal(503, "not_ready")]
    stub.script["/v1/models"] = [(500, {}, {"error": {"code": "internal_error", "message": "boom"}})]
    with Client(stub.url, retry=FAST) as client:
        with pytest.raises(PuzzleError) as exc:
            client.solve(PUZZLE)
        assert exc.value.cells == [(0, 1)]
        with pytest.raises(NotReady):
            client.ready()  # a probe reports the state now; retrying would hide it
        with pytest.raises(ServerError):
            client.models()
    assert stub.hits("/v1/solve") == stub.hits("/readyz") == stub.hits("/v1/models") == 1


def test_refused_connections_are_retried_then_reported():
    policy = Retry(attempts=3, backoff=0.01)
    with Client(f"http://127.0.0.1:{free_port()}", retry=policy) as client, pytest.raises(Unreachable) as exc:
        client.submit(PUZZLE)  # never reached the server, so even a job submission may be resent
    assert not exc.value.request_sent


def test_api_key_is_sent_as_a_bearer_token(stub: Stub, monkeypatch: pytest.MonkeyPatch):
    stub.script["/healthz"] = [(200, {}, {"status": "ok"})]
    with Client(stub.url, api_key="s3cret") as client:
        client.health()
    monkeypatch.setenv("EQR_API_KEY", "from-env")
    with Client(stub.url) as client:
        client.health()
    sent = [headers.get("Authorization") for _, _, headers in stub.seen]
    assert sent == ["Bearer s3cret", "Bearer from-env"]


def test_backoff_grows_with_jitter_and_respects_retry_after():
    policy = Retry(attempts=6, backoff=0.5, max_backoff=4.0, max_retry_after=10)
    refused = Overloaded("full", status=429)
    low = [policy.delay(n, refused, idempotent=False, rand=lambda: 0.0) for n in range(1, 6)]
    high = [policy.delay(n, refused, idempotent=False, rand=lambda: 1.0) for n in range(1, 6)]
    assert low == [0.25, 0.5, 1.0, 2.0, 2.0] and high == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert policy.delay(6, refused, idempotent=True) is None  # out of attempts
    told = Overloaded("full", status=429, retry_after=3)
    assert 3.0 <= policy.delay(1, told, idempotent=False) <= 3.5
    assert policy.delay(1, Overloaded("full", retry_after=11), idempotent=False) is None
    assert policy.delay(1, EqrError("other"), idempotent=True) is None
    assert policy.delay(1, Unreachable("broke", request_sent=True), idempotent=False) is None
    assert policy.delay(1, Unreachable("refused", request_sent=False), idempotent=False) is not None
