"""Optional API keys: which keys exist, and who (if anyone) a request's ``Authorization`` header names.

Keys come from ``EQR_API_KEYS`` (comma-separated) and ``EQR_API_KEYS_FILE`` (one a line); none
configured means no authentication. A key is a bearer secret, so it never leaves this module: logs,
metrics and rate-limit buckets see only :func:`fingerprint`, a short hash prefix that tells keys
apart without revealing them. Presented keys are compared with :func:`hmac.compare_digest` against
every configured key, so the time taken says nothing about how much of a key was right, or which.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from eqr.server.settings import Settings

SCHEME = "bearer"


class ApiKeyError(ValueError):
    """The configured keys cannot be used (unreadable or empty key file); the server must not start."""


def fingerprint(key: str) -> str:
    """A name for a key that is safe to log: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class KeyLimits:
    """What one key may do, from its line in the keys file; None: the server-wide setting applies."""

    max_priority: int | None = None
    rate_per_s: float | None = None
    in_flight: int | None = None


# option in the keys file: (KeyLimits field, parser, valid, what a valid value is)
KEY_OPTIONS: dict[str, tuple[str, Callable[[str], float], Callable[[float], bool], str]] = {
    "max_priority": ("max_priority", int, lambda v: -1000 <= v <= 1000, "an integer from -1000 to 1000"),
    "rate": ("rate_per_s", float, lambda v: 0 < v < math.inf, "requests per second, above 0"),
    "in_flight": ("in_flight", int, lambda v: v >= 1, "an integer of at least 1"),
}


def _parse_limits(options: list[str], where: str) -> KeyLimits:
    """``max_priority=N rate=R in_flight=N`` (any of them, any order) into :class:`KeyLimits`."""
    values: dict[str, float] = {}
    for option in options:
        name, _, text = option.partition("=")
        if name not in KEY_OPTIONS:
            known = ", ".join(f"{o}=" for o in KEY_OPTIONS)
            raise ApiKeyError(f"{where}: unknown option {name!r} (a key may carry {known})")
        field, parse, valid, expected = KEY_OPTIONS[name]
        try:
            value = parse(text)
        except ValueError:
            value = math.nan
        if not valid(value):
            raise ApiKeyError(f"{where}: {name} must be {expected}, got {text!r}")
        values[field] = value
    return KeyLimits(**values)  # type: ignore[arg-type]


def _read_keys_file(path: Path) -> dict[str, KeyLimits]:
    """One key a line, optionally followed by its limits: ``KEY max_priority=10 rate=5 in_flight=2``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ApiKeyError(f"cannot read the API keys file {path}: {exc}") from exc
    keys: dict[str, KeyLimits] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, *options = line.split()
        keys[key] = _parse_limits(options, f"{path} line {number} (key {fingerprint(key)})")
    if not keys:
        # a key file with no key would silently turn authentication off: fail closed instead
        raise ApiKeyError(f"the API keys file {path} holds no key")
    return keys


def load_api_keys(settings: Settings) -> dict[str, KeyLimits]:
    """Every configured key with its limits (empty: authentication is off). Raises :class:`ApiKeyError`."""
    keys: dict[str, KeyLimits] = {}
    if settings.api_keys is not None:
        keys |= {k.strip(): KeyLimits() for k in settings.api_keys.get_secret_value().split(",") if k.strip()}
    if settings.api_keys_file is not None:
        keys |= _read_keys_file(settings.api_keys_file)  # a key in both: the file's limits
    bad = [fingerprint(k) for k in keys if any(c.isspace() or not c.isprintable() for c in k)]
    if bad:
        raise ApiKeyError(f"API keys may not contain spaces or control characters (keys {', '.join(bad)})")
    return keys


class KeyRing:
    """The configured keys; :meth:`match` maps a presented key to a configured key's fingerprint."""

    def __init__(self, keys: Mapping[str, KeyLimits]) -> None:
        self._keys = [(k.encode(), fingerprint(k)) for k in sorted(keys)]
        self.limits = {fingerprint(k): limits for k, limits in keys.items()}  # by fingerprint, as the guard names keys

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def describe(self) -> str:
        """For the start-up log: how many keys, by fingerprint."""
        if not self._keys:
            return "no API keys configured: /v1 is open to every client"
        return f"API keys required on /v1 ({len(self._keys)} key(s): {', '.join(f for _, f in self._keys)})"

    def match(self, token: str | None) -> str | None:
        """The fingerprint of the configured key ``token`` is (None when it is none of them)."""
        if not token:
            return None
        presented = token.encode()
        match = None
        for key, name in self._keys:  # no early exit: every key costs the same whether it matches or not
            if hmac.compare_digest(presented, key):
                match = name
        return match


def bearer_token(authorization: str | None) -> str | None:
    """The key an ``Authorization: Bearer <key>`` header presents, or None (no header, another scheme)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == SCHEME and token else None
