"""The task interface: everything a layer outside ``tasks/`` may know about a puzzle, in tokens.

A model folder declares its task (``config.json``: ``"task"``, and for grids their size); the
rest of the project works on token arrays and asks the task to turn a user's puzzle into tokens
(with errors that name the cells at fault), tokens back into the task's answer form, whether an
answer obeys the task's rules, and how to read a labelled data set. Sudoku and Maze are the two
implementations; :func:`task_for` picks one from a model folder's metadata.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from eqr.model.tasks import maze, sudoku


class Task(ABC):
    """One puzzle family at one board size: a codec, a verifier and a data-set reader."""

    name: str
    vocab_size: int
    seq_len: int

    @abstractmethod
    def encode(self, puzzle: object) -> np.ndarray:
        """A user's puzzle (the task's input forms) to tokens [seq_len]; raises ``PuzzleError`` naming the cells."""

    @abstractmethod
    def decode(self, tokens: np.ndarray) -> Any:
        """Tokens [seq_len] to the task's answer form (what a client gets back)."""

    @abstractmethod
    def verify(self, puzzle: np.ndarray, answer: np.ndarray) -> bool:
        """Does ``answer`` (tokens) obey the task's rules and keep what ``puzzle`` (tokens) gives?"""

    @abstractmethod
    def read_set(self, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
        """A labelled data set: puzzle and solution tokens, [n, seq_len] each."""


class SudokuTask(Task):
    """9×9 Sudoku: an 81-character string or a 9×9 list in; answers as 81 digits (0 = no digit)."""

    name = "sudoku"
    vocab_size = sudoku.VOCAB_SIZE
    seq_len = sudoku.CELLS

    def encode(self, puzzle: object) -> np.ndarray:
        return sudoku.to_tokens(sudoku.parse_puzzle(puzzle))  # type: ignore[arg-type]

    def decode(self, tokens: np.ndarray) -> list[int]:
        return sudoku.from_tokens(tokens)

    def verify(self, puzzle: np.ndarray, answer: np.ndarray) -> bool:
        return sudoku.is_valid_solution(sudoku.from_tokens(puzzle), sudoku.from_tokens(answer))

    def read_set(self, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
        puzzles, solutions = sudoku.read_csv(str(path))
        return sudoku.to_tokens(np.asarray(puzzles)), sudoku.to_tokens(np.asarray(solutions))


class MazeTask(Task):
    """Maze-Unique on an N×N grid: rows of ``# SG`` in; answers as rows with the shortest path marked ``o``."""

    name = "maze"
    vocab_size = maze.VOCAB_SIZE

    def __init__(self, size: int) -> None:
        self.size = size
        self.seq_len = size * size

    def encode(self, puzzle: object) -> np.ndarray:
        return maze.to_tokens(maze.parse_maze(puzzle, size=self.size))  # type: ignore[arg-type]

    def decode(self, tokens: np.ndarray) -> list[str]:
        return maze.to_rows(maze.from_tokens(tokens, self.size))

    def verify(self, puzzle: np.ndarray, answer: np.ndarray) -> bool:
        return maze.verify(maze.from_tokens(puzzle, self.size), maze.from_tokens(answer, self.size))

    def read_set(self, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
        puzzles, solutions, _ = maze.read_jsonl(path)
        if puzzles.shape[1:] != (self.size, self.size):
            shape = "×".join(map(str, puzzles.shape[1:]))
            raise ValueError(f"{Path(path).name}: {shape} mazes, the model's are {self.size}×{self.size}")
        return maze.to_tokens(puzzles), maze.to_tokens(solutions)


def task_for(meta: dict[str, Any]) -> Task:
    """The task a model folder declares (``config.json``); a folder that names none is Sudoku (older folders)."""
    name = meta.get("task", "sudoku")
    if name == "sudoku":
        return SudokuTask()
    if name == "maze":
        grid = meta.get("grid") or {}
        rows, cols = grid.get("rows"), grid.get("cols")
        if not isinstance(rows, int) or rows != cols:
            raise ValueError(f"a maze model folder must give its square grid size as grid.rows/cols, got {grid!r}")
        return MazeTask(rows)
    raise ValueError(f"unknown task {name!r}; this version knows 'sudoku' and 'maze'")
