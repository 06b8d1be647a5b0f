"""The continuous-batching engine: slot pool, scheduler, model runner, and the thread that loops them.

``Engine`` is the interface for the API/broker layer; the contract types come from ``request``.
"""

from eqr.server.engine.engine import Engine
from eqr.server.engine.interface import (
    EngineConfig,
    EngineObserver,
    EngineStats,
    EngineStopped,
    InvalidParam,
    NullObserver,
    QueueFull,
)
from eqr.server.engine.request import IterationEvent, Job, SolveParams, SolveResult, Status

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
    "QueueFull",
    "SolveParams",
    "SolveResult",
    "Status",
]
