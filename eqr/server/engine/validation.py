"""The checks a job must pass before any engine takes it, as one function of the job and the caps.

The engine runs them at ``submit``; the Redis API node, which has no engine, runs the very same ones
against the caps its workers advertise, so a bad job is a 422 at the edge rather than a failed
result after a trip through the queue.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from eqr.model.aggregate import AGGREGATES
from eqr.server.engine.interface import BREADTH_MODES, InvalidParam
from eqr.server.jobs import Job

HALTS = ("convergence", "q_halt")
SEED_LIMIT = 2**63  # seeds live in int64 tensors


def check_job(job: Job, *, model: str, cells: int, vocab: int, caps: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidParam` naming the first field of ``job`` outside the limits.

    ``model``, ``cells``, ``vocab``: the served model's name and board (its task's ``seq_len`` and
    ``vocab_size``); ``caps``: the engine's caps (``Engine.caps``, the ``caps`` of its model card):
    ``depth`` and ``breadth`` are the largest allowed values.
    """
    p = job.params
    if job.model and job.model != model:
        raise InvalidParam("model", f"this engine serves model {model!r}, not {job.model!r}")
    tokens = job.tokens
    if not isinstance(tokens, list) or len(tokens) != cells or not all(_is_token(t, vocab) for t in tokens):
        raise InvalidParam("tokens", f"tokens must be {cells} integers in 0..{vocab - 1}")
    _check_int("depth", p.depth, 1, caps["depth"], optional=True)
    _check_int("breadth", p.breadth, 1, caps["breadth"])
    _check_int("quorum", p.quorum, 1, p.breadth, optional=True)
    _check_int("seed", p.seed, 0, SEED_LIMIT - 1, optional=True)
    _check_int("timeout_ms", p.timeout_ms, 1, None, optional=True)
    _check_int("priority", p.priority, None, None)
    _check_int("stream_every", p.stream_every, 1, None)
    _check_int("budget", p.budget, 1, caps["budget"], optional=True)
    if p.breadth_mode is not None and p.breadth_mode not in BREADTH_MODES:
        raise InvalidParam("breadth_mode", f"breadth_mode must be one of {BREADTH_MODES}, got {p.breadth_mode!r}")
    if p.verify is not None and not isinstance(p.verify, bool):
        raise InvalidParam("verify", f"verify must be true or false, got {p.verify!r}")
    if p.aggregate is not None and p.aggregate not in AGGREGATES:
        raise InvalidParam("aggregate", f"aggregate must be one of {AGGREGATES}, got {p.aggregate!r}")
    if p.halt not in HALTS:
        raise InvalidParam("halt", f"halt must be one of {HALTS}, got {p.halt!r}")
    if p.noise is not None and not (isinstance(p.noise, (int, float)) and math.isfinite(p.noise) and p.noise >= 0):
        raise InvalidParam("noise", f"noise must be a finite number >= 0, got {p.noise!r}")


def _is_token(value: Any, vocab: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < vocab


def _check_int(field: str, value: Any, lo: int | None, hi: int | None, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParam(field, f"{field} must be an integer, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise InvalidParam(field, f"{field} must be {bounds}, got {value}")
