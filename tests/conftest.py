"""Fixtures shared across test folders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.live_server import LiveServer, save_tiny_model, serve


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One ``eqr serve`` process for the session (start-up imports torch: seconds, paid once).

    Depth is uncapped so a test can keep work in flight as long as it needs; the slot pool is small.
    """
    model_dir = save_tiny_model(tmp_path_factory.mktemp("live") / "tiny")
    with serve(model_dir, "--slots", "8", "--max-depth", "1000000") as server:
        yield server
