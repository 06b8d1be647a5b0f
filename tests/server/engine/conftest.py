import pytest

from eqr.model.tasks.sudoku import SudokuTask
from eqr.server.engine import Engine, EngineConfig
from tests.server.engine.fake import FakeModel


@pytest.fixture
def make_engine():
    """Build engines on a fake model (window 3); stops every engine the test built."""
    built = []

    def make(model=None, observer=None, inference=None, clock=None, **config) -> Engine:
        config.setdefault("window", 3)
        config.setdefault("slots", 4)
        defaults = {"depth": 64, "noise": 0.0, **(inference or {})}
        timing = {} if clock is None else {"clock": clock}
        engine = Engine(
            model or FakeModel(),
            EngineConfig(**config),
            task=SudokuTask(),
            defaults=defaults,
            observer=observer,
            **timing,
        )
        built.append(engine)
        return engine

    yield make
    for engine in built:
        engine.stop()


class FakeClock:
    """The engine's clock in tests: time moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
