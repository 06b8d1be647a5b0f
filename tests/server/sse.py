"""A small server-sent-events parser for tests (the wire format, not a client library)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


def parse_sse(lines: Iterable[str]) -> list[tuple[str, Any]]:
    """``(event, data)`` pairs; ``data`` is decoded JSON. Events are separated by blank lines."""
    events: list[tuple[str, Any]] = []
    name, data = "message", []
    for line in [*lines, ""]:
        if not line:
            if data:
                events.append((name, json.loads("\n".join(data))))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:") :].strip())
    return events
