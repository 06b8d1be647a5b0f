"""When to send a request again, and how long to wait first.

A request is retried only when sending it again cannot do anything twice:

* **the connection was never made** (refused, DNS, connect timeout): the server saw nothing, so any
  call may be retried, including ``POST /v1/jobs``;
* **429 or 503**: eqr-serve answers these *before* accepting the work (queue full, loading,
  draining), so a refused solve or job submission was never queued and sending it again is safe.
  ``solve`` is a pure computation, but a duplicate would still burn slots, so this is the line;
* **the connection broke after the request was sent**: retried only for idempotent calls (GET, and
  DELETE of a job, whose second cancel is a no-op). A solve or job submission may already be running
  and is not sent twice.

Client-side timeouts are never retried: the timeout is the caller's budget, and retrying would
silently multiply it. Waits grow exponentially with jitter (so many clients refused at once do not
come back at once) and never undercut the server's ``Retry-After``; a ``Retry-After`` longer than
``max_retry_after`` is not waited for, the error is raised with ``retry_after`` set instead.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from eqr_client.errors import EqrError, NotReady, Overloaded, Unreachable


@dataclass(frozen=True)
class Retry:
    """Retry policy. ``Retry(attempts=1)`` (or ``retry=False`` on a client) disables retries.

    attempts: tries in all, the first included.
    backoff: the first wait in seconds; each later one doubles, up to ``max_backoff``.
    max_retry_after: the longest ``Retry-After`` (seconds) worth waiting for.
    """

    attempts: int = 4
    backoff: float = 0.25
    max_backoff: float = 8.0
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts counts the first try too; it must be at least 1")
        if self.backoff < 0 or self.max_backoff < 0 or self.max_retry_after < 0:
            raise ValueError("waits cannot be negative")

    def delay(
        self, failures: int, error: EqrError, *, idempotent: bool, rand: Callable[[], float] = random.random
    ) -> float | None:
        """Seconds to wait before the next try after ``failures`` failed tries, or None to give up."""
        if failures >= self.attempts or not retryable(error, idempotent=idempotent):
            return None
        if error.retry_after is not None and error.retry_after > self.max_retry_after:
            return None
        ceiling = min(self.max_backoff, self.backoff * 2 ** (failures - 1))
        wait = ceiling * (0.5 + rand() / 2)  # "equal jitter": keeps growing, yet spreads clients apart
        if error.retry_after is not None and error.retry_after >= wait:
            return error.retry_after + rand() * self.backoff  # not before the server asked, but not in lockstep
        return wait


NO_RETRY = Retry(attempts=1)


def retryable(error: EqrError, *, idempotent: bool) -> bool:
    """Whether sending the same request again is safe (see the module docstring)."""
    if isinstance(error, (Overloaded, NotReady)):
        return True
    if isinstance(error, Unreachable):
        return not error.request_sent or idempotent
    return False
