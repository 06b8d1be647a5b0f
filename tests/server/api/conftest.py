"""API test fixtures: a tiny random EqR served by the real engine, driven through httpx's ASGI transport.

``client`` serves a model folder exactly as ``eqr serve`` does (the lifespan loads it). ``gated`` puts
a :class:`GatedModel` under the real engine: its steps run only when the test hands out permits, which
makes queueing, draining, stalling and cancelling deterministic. The model's convergence tolerance
is 0, so a trajectory always runs its whole depth.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from fastapi import FastAPI

from eqr.model.checkpoint import load_model, save_model
from eqr.model.config import EqRConfig
from eqr.model.network import EqRNetwork
from eqr.model.tasks.registry import task_for
from eqr.server.api import create_app
from eqr.server.broker.local import LocalBroker
from eqr.server.engine import Engine, EngineConfig, Job, SolveResult
from eqr.server.settings import Settings

TINY = EqRConfig(hidden_size=16, expansion=2, multiple_of=16, L_layers=1, H_cycles=1, L_cycles=1, halt_max_steps=4)
INFERENCE = {"depth": 6, "noise": 0.01, "window": 2, "tol": 0.0}
PUZZLE = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."
MODEL_NAME = "tiny"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_model(tmp_path_factory.mktemp("api") / MODEL_NAME, EqRNetwork(TINY), {"inference": INFERENCE})


@pytest.fixture(scope="session")
def paper_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model in a folder that takes the ``paper`` preset (its ``inference.presets``)."""
    torch.manual_seed(0)
    inference = {**INFERENCE, "presets": ["paper"]}
    return save_model(tmp_path_factory.mktemp("api") / "paper-tiny", EqRNetwork(TINY), {"inference": inference})


def make_settings(model_dir: Path, **overrides: Any) -> Settings:
    return Settings(**{"model": model_dir, "slots": 8, "max_depth": 64, "max_breadth": 8, **overrides})


@asynccontextmanager
async def serving(app: FastAPI, *, raise_app_exceptions: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan around an ASGI client, as uvicorn would around connections."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://eqr.test", timeout=30) as client:
            yield client


@pytest.fixture
def app(model_dir: Path) -> FastAPI:
    return create_app(make_settings(model_dir))


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(app) as c:
        yield c


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``condition`` on the event loop (the engine works on its own thread meanwhile)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


class GatedModel:
    """Wraps an EqRNetwork; each ``iterate`` (one engine step) waits for a permit from the test."""

    def __init__(self, inner: EqRNetwork) -> None:
        self.inner = inner
        self.cfg = inner.cfg
        self._cond = threading.Condition()
        self._permits: int | None = 0  # None: open
        self.fail = False  # make every step raise, as a broken model would

    def parameters(self):
        return self.inner.parameters()

    def initial_state(self, *args: Any, **kwargs: Any):
        return self.inner.initial_state(*args, **kwargs)

    def iterate(self, *args: Any, **kwargs: Any):
        with self._cond:
            self._cond.wait_for(lambda: self._permits is None or self._permits > 0)
            if self._permits is not None:
                self._permits -= 1
        if self.fail:
            raise RuntimeError("injected model failure")
        return self.inner.iterate(*args, **kwargs)

    def allow(self, steps: int = 1) -> None:
        with self._cond:
            if self._permits is not None:
                self._permits += steps
            self._cond.notify_all()

    def open(self) -> None:
        with self._cond:
            self._permits = None
            self._cond.notify_all()

    async def drip(self, done: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """One step at a time until ``done()``: a cancel lands within a step or two."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not done():
            assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
            self.allow(1)
            await asyncio.sleep(0.01)


class Finished:
    """An engine observer keeping finished results (engine thread appends, tests read)."""

    def __init__(self) -> None:
        self.results: list[SolveResult] = []

    def on_step(self, *args: Any) -> None:
        pass

    def on_evict(self, reason: str, count: int) -> None:
        pass

    def on_iterations(self, n: int) -> None:
        pass

    def on_finished(self, result: SolveResult, job: Job) -> None:
        self.results.append(result)

    def on_preemption(self, *args: Any) -> None:
        pass


@dataclass
class Gated:
    app: FastAPI
    client: httpx.AsyncClient
    model: GatedModel
    broker: LocalBroker
    finished: Finished

    def in_flight(self) -> int:
        return self.broker.stats().in_flight


@pytest.fixture
def gated_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """``engine`` / ``broker`` / ``settings`` overrides; set per test with
    ``@pytest.mark.parametrize("gated_config", [{...}], indirect=True)``."""
    return getattr(request, "param", {})


@pytest.fixture
async def gated(model_dir: Path, gated_config: dict[str, Any]) -> AsyncIterator[Gated]:
    network, meta = load_model(model_dir)
    model = GatedModel(network)
    finished = Finished()
    engine_cfg = {"slots": 2, "max_queue": 16, "max_depth": 64, "max_breadth": 8, **gated_config.get("engine", {})}
    config = EngineConfig(**engine_cfg)
    engine = Engine(
        model, config, model_name=MODEL_NAME, task=task_for(meta), defaults=meta["inference"], observer=finished
    )
    broker = LocalBroker(engine, **gated_config.get("broker", {}))
    app = create_app(make_settings(model_dir, **gated_config.get("settings", {})), broker)
    try:
        async with serving(app) as client:
            yield Gated(app, client, model, broker, finished)
            model.open()  # let the engine finish whatever is left, so it can stop
    finally:
        model.open()
