"""Slow clients against a real ``eqr serve``: raw sockets that dribble headers or a body get 408 and a
closed connection, while idle kept-alive connections and long streams are left alone.

The server runs with 1-second read timeouts; every socket read has a generous timeout of its own, so
a server that never answers fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.live_server import LiveServer, save_tiny_model, serve

PUZZLE = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."
READ_TIMEOUT_S = 1.0
GIVE_UP_S = 20.0  # far past the timeouts: only reached when the server never closes


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder: Path = tmp_path_factory.mktemp("slow")
    timeouts = {"EQR_HEADER_TIMEOUT_S": str(READ_TIMEOUT_S), "EQR_BODY_TIMEOUT_S": str(READ_TIMEOUT_S)}
    with serve(save_tiny_model(folder / "tiny"), "--max-depth", "1000000", env=timeouts) as running:
        yield running


def connect(server: LiveServer) -> socket.socket:
    url = urlsplit(server.url)
    return socket.create_connection((url.hostname, url.port), timeout=GIVE_UP_S)


def dribble_until_closed(sock: socket.socket, first: bytes, each: bytes) -> bytes:
    """Send ``first``, then ``each`` every 0.2 s until the server closes; everything it answered."""
    sock.sendall(first)
    sock.settimeout(0.2)
    received = b""
    deadline = time.monotonic() + GIVE_UP_S
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            try:
                sock.sendall(each)
            except OSError:  # the server closed while we wrote: what it sent is in the buffer
                sock.settimeout(GIVE_UP_S)
                return received + read_all(sock)
            continue
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the server kept the connection open for {GIVE_UP_S} s; it sent {received!r}")


def read_all(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def assert_408(response: bytes, part: str) -> None:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), response
    assert b"connection: close" in head.lower()
    error = json.loads(body)["error"]
    assert error["code"] == "request_timeout" and part in error["message"] and "1 s" in error["message"], error


def test_a_request_line_without_the_end_of_its_headers_gets_408(server: LiveServer):
    with connect(server) as sock:
        sock.sendall(b"GET /\r\n")
        assert_408(read_all(sock), "headers")


def test_a_connection_that_sends_nothing_is_closed_with_408(server: LiveServer):
    with connect(server) as sock:
        assert_408(read_all(sock), "headers")


def test_endless_header_lines_get_408(server: LiveServer):
    with connect(server) as sock:
        start = b"POST /v1/solve HTTP/1.1\r\nHost: eqr\r\n"
        assert_408(dribble_until_closed(sock, start, b"X-Padding: a\r\n"), "headers")


def test_a_body_at_one_byte_a_time_gets_408(server: LiveServer):
    with connect(server) as sock:
        head = b"POST /v1/solve HTTP/1.1\r\nHost: eqr\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
        assert_408(dribble_until_closed(sock, head + b'{"puzzle": "', b"."), "body")
    with httpx.Client(base_url=server.url, timeout=30) as http:  # the route gave up its wait quietly
        assert http.get("/readyz").json()["in_flight"] == 0


def test_a_kept_alive_connection_may_idle_between_requests_longer_than_the_header_timeout(server: LiveServer):
    request = b"GET /healthz HTTP/1.1\r\nHost: eqr\r\n\r\n"
    with connect(server) as sock:
        sock.sendall(request)
        assert read_health(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(2 * READ_TIMEOUT_S)  # uvicorn's keep-alive (5 s) governs idle connections, not the header timer
        sock.sendall(request)
        assert read_health(sock).startswith(b"HTTP/1.1 200 ")


def read_health(sock: socket.socket) -> bytes:
    """One /healthz response, however many reads it arrives in."""
    data = b""
    while not data.endswith(b'{"status":"ok"}'):
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection after {data!r}"
        data += chunk
    return data


def test_a_stream_outlives_the_read_timeouts(server: LiveServer):
    body = {"puzzle": PUZZLE, "depth": 1_000_000, "stream": True, "stream_every": 1}
    with httpx.Client(base_url=server.url, timeout=30) as http, http.stream("POST", "/v1/solve", json=body) as r:
        assert r.status_code == 200
        start, last = time.monotonic(), ""
        for line in r.iter_lines():
            last = line or last
            if line.startswith("event: iteration") and time.monotonic() - start > 3 * READ_TIMEOUT_S:
                break  # still streaming well after both timeouts would have fired
        else:
            raise AssertionError(f"the stream ended early; its last line: {last[:300]}")
