"""Fixtures shared across test folders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.live_server import (
    API_KEY,
    LiveServer,
    save_tiny_grid_model,
    save_tiny_maze_model,
    save_tiny_model,
    serve,
)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One ``eqr serve`` process for the session (start-up imports torch: seconds, paid once), serving
    a tiny Sudoku model (``tiny``, the default) and a tiny 5×5 maze model (``maze-tiny``), as the
    bundled models are served side by side.

    Depth is uncapped so a test can keep work in flight as long as it needs; each model's slot pool is small.
    """
    folder = tmp_path_factory.mktemp("live")
    models = [save_tiny_model(folder / "tiny"), save_tiny_maze_model(folder / "maze-tiny")]
    with serve(models, "--slots", "8", "--max-depth", "1000000") as server:
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


@pytest.fixture(scope="session")
def grid_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """An ``eqr serve`` of one tiny generic grid model (``GRID``): a task without rules (``valid`` null),
    and a default model that is not a Sudoku."""
    with serve(save_tiny_grid_model(tmp_path_factory.mktemp("grid") / "grid-tiny"), "--slots", "4") as server:
        yield server
