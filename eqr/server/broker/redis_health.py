"""Whether a process reaches Redis: one tracker for the API node's broker and the worker.

Both talk to Redis from many tasks; any of them may find it gone or back. The tracker keeps the
last verdict and why, for ``/readyz``, ``/healthz`` and the ``eqr_redis_up`` gauge, and logs each
change once rather than every failed call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class RedisHealth:
    """The verdict of the last attempt to reach Redis; not connected until one succeeds."""

    def __init__(self) -> None:
        self.ok = False
        self.error = "not connected yet"

    def up(self, detail: str = "") -> None:
        if not self.ok:
            log.info("Redis is reachable%s", f"; {detail}" if detail else "")
        self.ok = True

    def down(self, exc: BaseException) -> None:
        if self.ok:
            log.warning("Redis is unreachable: %s", exc)
        self.ok = False
        self.error = str(exc) or type(exc).__name__

    @property
    def reason(self) -> str:
        """Why it is not usable, in words for a client or an operator."""
        return f"Redis is unreachable: {self.error}"


async def after_error(
    health: RedisHealth, exc: BaseException, recreate_group: Callable[[], Awaitable[None]], pause_s: float
) -> None:
    """A failed Redis call: a Redis that came back empty (NOGROUP) gets its consumer group again;
    anything else marks Redis down, and the caller's loop pauses before its next try."""
    if "NOGROUP" in str(exc):
        try:
            await recreate_group()
        except (RedisError, OSError) as again:  # still down: the next call tells
            health.down(again)
        return
    health.down(exc)
    await asyncio.sleep(pause_s)
