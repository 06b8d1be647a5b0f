"""Fixtures shared across test folders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.live_server import API_KEY, LiveServer, save_tiny_model, serve


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One ``eqr serve`` process for the session (start-up imports torch: seconds, paid once).

    Depth is uncapped so a test can keep work in flight as long as it needs; the slot pool is small.
    """
    model_dir = save_tiny_model(tmp_path_factory.mktemp("live") / "tiny")
    with serve(model_dir, "--slots", "8", "--max-depth", "1000000") as server:
        yield server


@pytest.fixture(scope="session")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """An ``eqr serve`` that requires ``API_KEY`` (from ``--api-keys-file``), logging at info level so a
    test can check that the key never appears; depth is capped at 8, so no request runs long. The
    schemathesis run sends hundreds of requests with wrong keys on purpose, so the per-address
    throttle of failed authentications (tested in tests/server/api/test_security.py) is off here."""
    folder = tmp_path_factory.mktemp("keyed")
    (folder / "keys").write_text(f"# test clients\n{API_KEY}\n")
    args = ["--slots", "8", "--max-depth", "8", "--api-keys-file", str(folder / "keys")]
    with serve(
        save_tiny_model(folder / "tiny"), *args, env={"EQR_LOG_LEVEL": "info", "EQR_AUTH_FAILURES_PER_MIN": "0"}
    ) as server:
        yield server
