"""The continuous-batching engine: scheduler, requests, and the thread that loops them over the runtime.

``Engine`` is the interface for the API/broker layer; the wire types come from :mod:`eqr.server.jobs`.
``Engine`` itself is imported on first use: the torch-free parts of this package (``interface``,
``validation``) serve the Redis API node, which must not load torch just to import them.
"""

from typing import TYPE_CHECKING, Any

from eqr.server.engine.interface import (
    EngineConfig,
    EngineObserver,
    EngineStats,
    EngineStopped,
    InvalidParam,
    NullObserver,
    Overloaded,
)
from eqr.server.jobs import IterationEvent, Job, SolveParams, SolveResult, Status

if TYPE_CHECKING:
    from eqr.server.engine.engine import Engine


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from eqr.server.engine.engine import Engine

        return Engine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Engine",
    "EngineConfig",
    "EngineObserver",
    "EngineStats",
    "EngineStopped",
    "InvalidParam",
    "IterationEvent",
    "Job",
    "NullObserver",
    "Overloaded",
    "SolveParams",
    "SolveResult",
    "Status",
]
