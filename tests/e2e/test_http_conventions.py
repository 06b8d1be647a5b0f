"""Gzip must not hold back a stream: over a real socket, a client that accepts gzip still gets each SSE
event as it happens, uncompressed, while the solve is running."""

from __future__ import annotations

import httpx

from tests.live_server import save_tiny_model, serve

PUZZLE = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."


def test_an_sse_stream_is_not_compressed_or_buffered(tmp_path):
    with serve(save_tiny_model(tmp_path / "tiny"), "--max-depth", "1000000") as server:
        body = {"puzzle": PUZZLE, "depth": 1_000_000, "stream": True}
        with httpx.Client(base_url=server.url, timeout=20) as http:
            with http.stream("POST", "/v1/solve", json=body, headers={"Accept-Encoding": "gzip"}) as r:
                assert r.status_code == 200 and "content-encoding" not in r.headers
                lines = r.iter_lines()
                # a million iterations cannot be over yet: these events were sent while the solve ran
                assert next(line for line in lines if line.startswith("event:")) == "event: iteration"
                assert next(line for line in lines if line.startswith("data:")).startswith('data: {"id"')
            assert http.get("/metrics", headers={"Accept-Encoding": "gzip"}).headers["content-encoding"] == "gzip"
