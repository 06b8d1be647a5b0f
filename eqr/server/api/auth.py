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
from pathlib import Path

from eqr.server.settings import Settings

SCHEME = "bearer"


class ApiKeyError(ValueError):
    """The configured keys cannot be used (unreadable or empty key file); the server must not start."""


def fingerprint(key: str) -> str:
    """A name for a key that is safe to log: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def _read_keys_file(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ApiKeyError(f"cannot read the API keys file {path}: {exc}") from exc
    keys = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        # a key file with no key would silently turn authentication off: fail closed instead
        raise ApiKeyError(f"the API keys file {path} holds no key")
    return keys


def load_api_keys(settings: Settings) -> frozenset[str]:
    """Every configured key (empty: authentication is off). Raises :class:`ApiKeyError`."""
    keys: list[str] = []
    if settings.api_keys is not None:
        keys += [k.strip() for k in settings.api_keys.get_secret_value().split(",") if k.strip()]
    if settings.api_keys_file is not None:
        keys += _read_keys_file(settings.api_keys_file)
    bad = [fingerprint(k) for k in keys if any(c.isspace() or not c.isprintable() for c in k)]
    if bad:
        raise ApiKeyError(f"API keys may not contain spaces or control characters (keys {', '.join(bad)})")
    return frozenset(keys)


class KeyRing:
    """The configured keys; :meth:`match` maps a presented key to a configured key's fingerprint."""

    def __init__(self, keys: frozenset[str]) -> None:
        self._keys = [(k.encode(), fingerprint(k)) for k in sorted(keys)]

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
