"""Brokers carry jobs from the API to an engine: in-process (``local``) or over Redis Streams (``redis``)."""

from eqr.server.broker.base import (
    Broker,
    BrokerStats,
    InvalidParam,
    JobHandle,
    JobState,
    ModelCard,
    Overloaded,
    Readiness,
    Unavailable,
)

__all__ = [
    "Broker",
    "BrokerStats",
    "InvalidParam",
    "JobHandle",
    "JobState",
    "ModelCard",
    "Overloaded",
    "Readiness",
    "Unavailable",
]
