"""The task interface: everything a layer outside ``tasks/`` may know about a puzzle.

A model folder declares its task (``config.json``: ``"task"`` and, for grids, ``"grid"``); the rest of
the project works on token arrays and asks the task to read a client's puzzle (with errors naming
the cells at fault), to show tokens as a board in the form the client used, to check an answer
against the task's rules, to describe its board to the playground, and to read a labelled set.
:func:`eqr.model.tasks.registry.task_for` builds the task a folder declares.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Parsed:
    """A client's puzzle as tokens [seq_len], and the form it was written in (answers come back so)."""

    tokens: np.ndarray
    form: str


class Task(ABC):
    """One puzzle family at one board size: a codec, a verifier, a renderer hint and a data-set reader."""

    name: str
    vocab_size: int
    seq_len: int
    default_form: str  # the form of boards shown without a client's puzzle (CLI, evaluation)

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """The task as a model folder declares it (``{"task": ..., "grid": ...}``); ``task_for`` reads it back."""

    @abstractmethod
    def parse(self, puzzle: object) -> Parsed:
        """A client's puzzle to tokens; raises :class:`~eqr.model.tasks.errors.PuzzleError` naming the cells."""

    def encode(self, puzzle: object) -> np.ndarray:
        """A client's puzzle to tokens [seq_len]."""
        return self.parse(puzzle).tokens

    @abstractmethod
    def board(self, tokens: np.ndarray, form: str | None = None) -> Any:
        """Tokens [seq_len] as a board in ``form`` (default :attr:`default_form`): answers and stream events."""

    def text(self, tokens: np.ndarray) -> str:
        """Tokens as a board for a terminal (``eqr solve``): rows on lines by default."""
        board = self.board(tokens, "text")
        return board if isinstance(board, str) else "\n".join(board)

    def answer_fields(self, tokens: np.ndarray, form: str | None = None) -> dict[str, Any]:
        """The response fields that show an answer: ``answer`` (and, for some tasks, more views of it)."""
        return {"answer": self.board(tokens, form)}

    @abstractmethod
    def verify(self, puzzle: np.ndarray, answer: np.ndarray) -> bool | None:
        """Does ``answer`` (tokens) obey the task's rules and keep what ``puzzle`` (tokens) gives?

        ``None`` when the task has no rules to check (a generic grid task).
        """

    def conflicts(self, puzzle: np.ndarray, answer: np.ndarray) -> np.ndarray | None:
        """The cells of ``answer`` (tokens [seq_len]) that break a rule or a given of ``puzzle``: a bool mask
        [seq_len], or ``None`` when the task cannot say which cells are at fault (a generic grid task).

        Why: a restart that keeps what is right re-noises only these cells' latents, as local search
        does; ``None`` means a full restart. Only the task knows its rules, so this is the one place
        that decides which cells are wrong.
        """
        return None

    def allowed(self, puzzle: np.ndarray) -> np.ndarray | None:
        """The tokens each answer cell may take given ``puzzle`` (tokens [..., seq_len]): a bool mask
        [..., seq_len, vocab_size], or ``None`` when any token may stand anywhere (nothing is given).

        The puzzle's givens are constraints of the answer, not a repair made afterwards: every answer
        is decoded as the most likely allowed token of each cell (``SlotPool.snapshot``), so no answer
        changes a given, and verifying, aggregating and responding all see the same answer.
        Default: no constraint (generic grids).
        """
        return None

    @abstractmethod
    def render(self) -> dict[str, Any]:
        """How the playground draws a board: its kind, shape and, for character grids, the characters."""

    @abstractmethod
    def example(self) -> Any:
        """A puzzle to show in documentation and the playground."""

    @abstractmethod
    def read_set(self, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
        """A labelled data set: puzzle and solution tokens, [n, seq_len] each."""
