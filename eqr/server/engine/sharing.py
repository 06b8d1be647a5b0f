"""The fair scheduler's two questions: in what order do requests deserve slots, and how many does each get.

Slot-iterations are the shared resource. :func:`rank` orders the requests that have work by a
multi-level feedback queue on *attained service* (the slot-iterations a request has had so far,
restarts and every trajectory included): level 0 until it has had ``quantum`` iterations, then one
level more each time its service doubles. So a new request (an easy puzzle) goes ahead of one that
has already had a lot (a hard puzzle at depth 256, a verified request's restarts), and a request's
place changes only at a level boundary, not every iteration (few preemptions). On top of the
level: ``priority`` (higher first) and aging (``aging_per_s`` per second a request had work and no
slot), so no request starves: ``score = level - priority - aging_per_s x waited``. Within a class
(the same whole score) the nearest deadline goes first, then arrival.

:func:`share` then gives slots in that order. The requests tied in the best class first get their
shares: every client its share of the pool (``capacity // clients``) and every request its share of
its client's (at least one slot), so among equals one large request or one client cannot hold the
pool (and one that has had more falls to a later class anyway); then what is left goes in rank
order (work-conserving: a slot is idle only if no request has work for it).

Torch-free, plain data: the scheduler's tests drive it with a fake clock.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

R = TypeVar("R", bound=Hashable)

QUANTUM = 16  # iterations of level 0: about what an easy Sudoku puzzle needs (docs/scheduling.md)


def level(attained: int, quantum: int) -> int:
    """The feedback-queue level of ``attained`` slot-iterations: 0 below ``quantum``, +1 per doubling."""
    return 0 if attained < quantum else int(math.log2(attained / quantum)) + 1


def score(attained: int, quantum: int, priority: int, aging_per_s: float, waited_s: float) -> int:
    """The class of a request (lower runs first): its level, less its priority and aging."""
    return math.floor(level(attained, quantum) - priority - aging_per_s * waited_s)


def share(
    order: Sequence[R], capacity: int, want: Callable[[R], int], client: Callable[[R], str], tied: int
) -> dict[R, int]:
    """Slots per request (``order``: best first; ``want``: trajectories it could run now; ``client``: who
    sent it; ``tied``: how many lead ``order`` in the best class). The tied ones first get their shares,
    per client and, within it, per request; then the rest goes in order."""
    top = order[:tied]
    given: dict[R, int] = dict.fromkeys(order, 0)
    free = capacity
    requests = Counter(client(r) for r in top)
    per_client = max(1, capacity // max(1, len(requests)))
    used: Counter[str] = Counter()
    for r in top:
        c = client(r)
        n = min(want(r), max(1, per_client // requests[c]), per_client - used[c], free)
        given[r] = n
        used[c] += n
        free -= n
    for r in order:
        if not free:
            break
        n = min(want(r) - given[r], free)
        given[r] += n
        free -= n
    return given
