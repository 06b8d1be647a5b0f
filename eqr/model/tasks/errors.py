"""The one error a task raises for a puzzle it cannot accept, whatever the task.

Layers outside ``tasks/`` catch this (and only this) to answer a 422 naming the cells at fault, so it
lives apart from every particular task.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PuzzleError(ValueError):
    """A puzzle that cannot be accepted; ``cells`` lists the positions at fault (row, col, 0-based)."""

    message: str
    cells: list[tuple[int, int]] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message
