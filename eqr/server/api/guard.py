"""Who may call ``/v1`` and how much: API key, rate limit, requests in flight, as ASGI middleware.

In that order, before the request reaches a route: a missing key is 401, a wrong one 403, a client
over its rate 429 ``rate_limited``, one with too many requests running 429 ``too_many_in_flight``,
each in the one JSON error shape. Failed authentications (401 or 403) are budgeted by
:class:`~eqr.server.api.ratelimit.FailureThrottle`: an address that keeps presenting the same wrong
key (or none) gets 429 ``auth_throttled`` for that key only, while other clients behind the same
address pass with theirs; an address that tries many different keys (guessing) gets 429 for every
attempt. Either refusal comes before the key is compared with the configured ones, so guessing costs
a fixed wait per try rather than one round trip.

Middleware rather than a route dependency because the in-flight count must cover the whole
response, and a streamed solve answers long after its route returned.

Only paths under ``/v1/`` are guarded. ``/healthz``, ``/readyz`` and ``/metrics`` stay open for load
balancers, orchestrators and Prometheus, which carry no keys and get only aggregate numbers, never a
puzzle or an answer; ``/``, ``/static`` and the OpenAPI documents are the same public files for
everyone (the playground asks its user for a key and sends it on its ``/v1`` calls).
"""

from __future__ import annotations

import math

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from eqr.server.api.auth import KeyRing, bearer_token, fingerprint
from eqr.server.api.errors import ApiError, respond
from eqr.server.api.ratelimit import FailureThrottle, InFlightLimiter, RateLimiter

GUARDED_PREFIX = "/v1/"


def unauthorized() -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        "an API key is required: send 'Authorization: Bearer <key>'",
        headers={"WWW-Authenticate": 'Bearer realm="eqr"'},
    )


def forbidden() -> ApiError:
    return ApiError(403, "forbidden", "the API key is not valid")


def _retry_later(code: str, message: str, wait_s: float) -> ApiError:
    """A 429 whose ``Retry-After`` is ``wait_s`` rounded up to whole seconds; ``{retry}`` in ``message`` names it."""
    retry = max(1, math.ceil(wait_s))
    return ApiError(429, code, message.format(retry=retry), headers={"Retry-After": str(retry)})


def rate_limited(wait_s: float, rate: float) -> ApiError:
    return _retry_later("rate_limited", f"rate limit of {rate:g} requests/s exceeded; retry in {{retry}} s", wait_s)


def auth_throttled(wait_s: float) -> ApiError:
    return _retry_later(
        "auth_throttled",
        "too many failed API-key attempts from this address (with this key, or with different "
        "keys); retry in {retry} s",
        wait_s,
    )


def too_many_in_flight(limit: int) -> ApiError:
    return ApiError(
        429,
        "too_many_in_flight",
        f"at most {limit} requests per client may run at once; retry when one has finished",
        headers={"Retry-After": "1"},
    )


class ClientGuard:
    """Authenticates and limits each ``/v1`` request; any part may be off (no keys, rate 0, limit 0).

    ``auth_failures``: the budget of failed authentications per address and key.
    """

    def __init__(
        self,
        app: ASGIApp,
        keys: KeyRing,
        rate: RateLimiter | None = None,
        in_flight: InFlightLimiter | None = None,
        auth_failures: FailureThrottle | None = None,
    ) -> None:
        self.app = app
        self.keys = keys
        self.rate = rate
        self.in_flight = in_flight
        self.auth_failures = auth_failures
        # keys whose line in the keys file sets their own rate or in-flight limit
        self.key_rates = {k: RateLimiter(lim.rate_per_s) for k, lim in keys.limits.items() if lim.rate_per_s}
        self.key_in_flight = {k: InFlightLimiter(lim.in_flight) for k, lim in keys.limits.items() if lim.in_flight}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(GUARDED_PREFIX):
            await self.app(scope, receive, send)
            return
        client, in_flight, error = self._admit(scope)
        if error is not None:
            metrics = getattr(scope["app"].state, "metrics", None) if "app" in scope else None
            await respond(error, metrics)(scope, receive, send)
            return
        if in_flight is None:
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            in_flight.leave(client)

    def _admit(self, scope: Scope) -> tuple[str, InFlightLimiter | None, ApiError | None]:
        """The client's name, the in-flight limiter it was counted in (if any) and, when it may not
        proceed, why. The matched key's fingerprint goes to ``scope["state"]["api_key"]`` for the routes."""
        peer = scope.get("client")
        ip = f"ip:{peer[0] if peer else 'unknown'}"
        rate, in_flight = self.rate, self.in_flight
        if self.keys.enabled:
            failures = self.auth_failures
            token = bearer_token(Headers(scope=scope).get("authorization"))
            attempt = fingerprint(token) if token else "no key"
            if failures is not None and (wait := failures.blocked(ip, attempt)) > 0:
                return "", None, auth_throttled(wait)
            key = self.keys.match(token)
            if key is None:
                if failures is not None:
                    failures.fail(ip, attempt)
                return "", None, forbidden() if token else unauthorized()
            scope.setdefault("state", {})["api_key"] = key
            client = f"key:{key}"
            rate, in_flight = self.key_rates.get(key, rate), self.key_in_flight.get(key, in_flight)
        else:
            client = ip
        scope.setdefault("state", {})["client"] = client  # the scheduler's share per client (Job.client)
        if rate is not None and (wait := rate.acquire(client)) > 0:
            return client, None, rate_limited(wait, rate.rate)
        if in_flight is not None and not in_flight.enter(client):
            return client, None, too_many_in_flight(in_flight.limit)
        return client, in_flight, None
