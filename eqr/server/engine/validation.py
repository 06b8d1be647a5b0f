"""The checks a request must pass before any engine takes it, read off the field declaration.

Each field's :class:`~eqr.server.jobs.FieldSpec` says its type, its bounds, its words and the engine
cap that bounds it, so one loop checks them all and a new field is checked the moment it is declared.
The engine runs them when it resolves a plan; the Redis API node, which has no engine, resolves the
very same plan against the caps its workers advertise, so a bad job is a 422 at the edge rather than
a failed result after a trip through the queue.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from eqr.server.engine.interface import InvalidParam
from eqr.server.jobs import FieldSpec, Job, SolveParams, field_specs


def check_job(job: Job, *, model: str, cells: int, vocab: int) -> None:
    """Raise :class:`InvalidParam` when ``job`` is not for this model or its tokens are not a board of it."""
    if job.model and job.model != model:
        raise InvalidParam("model", f"this engine serves model {model!r}, not {job.model!r}")
    tokens = job.tokens
    if not isinstance(tokens, list) or len(tokens) != cells or not all(_is_token(t, vocab) for t in tokens):
        raise InvalidParam("tokens", f"tokens must be {cells} integers in 0..{vocab - 1}")


def check_params(params: SolveParams, caps: Mapping[str, int]) -> None:
    """Raise :class:`InvalidParam` naming the first set field outside its spec or its engine cap."""
    for name, spec in field_specs().items():
        value = getattr(params, name)
        if value is not None:
            check_value(name, spec, value, caps.get(spec.cap) if spec.cap else None)


def check_value(name: str, spec: FieldSpec, value: Any, cap: int | None = None) -> None:
    """One field's value against its spec (``cap``: the engine's lower limit, if any)."""
    if spec.choices is not None:
        if value not in spec.choices:
            raise InvalidParam(name, f"{name} must be one of {spec.choices}, got {value!r}")
        return
    if spec.kind is bool:
        if not isinstance(value, bool):
            raise InvalidParam(name, f"{name} must be true or false, got {value!r}")
        return
    number = (int,) if spec.kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, number) or not math.isfinite(value):
        what = "an integer" if spec.kind is int else "a finite number"
        raise InvalidParam(name, f"{name} must be {what}, got {value!r}")
    hi = spec.hi if cap is None else min(cap, spec.hi if spec.hi is not None else cap)
    if (spec.lo is not None and value < spec.lo) or (hi is not None and value > hi):
        bounds = f">= {_num(spec.lo)}" if hi is None else f"between {_num(spec.lo)} and {_num(hi)}"
        raise InvalidParam(name, f"{name} must be {bounds}, got {value}")


def _num(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)


def _is_token(value: Any, vocab: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < vocab
