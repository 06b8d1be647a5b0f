"""Maze codec, validation and answer checker, in the paper's Maze-Unique format (eqr.md §3).

A maze is a grid of ``#`` (wall), `` `` (open), ``S`` (start) and ``G`` (goal); its answer is the same
grid with the cells of the shortest S→G path between them marked ``o``. Token ids: 0 = PAD, then
``# SGo`` as 1..5 (vocab 6), row-major. Every maze enters the system through :func:`parse_maze`, so
every error a user can make is reported here once, with a message that names the rows or cells at
fault. A parsed maze is an int8 array [rows, cols] of token ids.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from eqr.model.tasks import chargrid
from eqr.model.tasks.base import Parsed, Task
from eqr.model.tasks.chargrid import RowsForm, cell_name, listing
from eqr.model.tasks.errors import PuzzleError
from eqr.model.tasks.mazegrid import (  # the grid's alphabet and search, shared with the generator
    CHARSET,
    GOAL_ID,
    OPEN_ID,
    PATH_ID,
    START_ID,
    STEPS,
    VOCAB_SIZE,
    WALL_ID,
    bfs,
    to_rows,
)

EXAMPLE_SEED = 7  # not a training seed (those start at 2**32) nor an eval set's
HINT = (
    "use '#' for walls, ' ' for open cells, 'S' for the start and 'G' for the goal ('o' marks the answer, not the maze)"
)


def parse_maze(puzzle: str | list, size: int | None = None) -> np.ndarray:
    """Parse a maze (rows of ``# SG``) into token ids [rows, cols]; raise :class:`PuzzleError`.

    ``size`` (a model's board side) additionally requires a ``size`` × ``size`` grid.
    """
    rows, _ = chargrid.read_rows(puzzle, "maze")
    chargrid.check_shape(rows, "maze", None if size is None else (size, size))
    chargrid.check_chars(rows, CHARSET[:4], HINT)
    grid = chargrid.to_ids(rows, CHARSET)
    for token, what in ((START_ID, "start 'S'"), (GOAL_ID, "goal 'G'")):
        found = [(int(r), int(c)) for r, c in np.argwhere(grid == token)]
        if len(found) != 1:
            where = f" at {listing([cell_name(*rc) for rc in found])}" if found else ""
            raise PuzzleError(f"maze must have exactly one {what}, found {len(found)}{where}", found)
    if shortest_path_length(grid) < 0:
        s, g = _find(grid, START_ID), _find(grid, GOAL_ID)
        raise PuzzleError(
            f"no path through open cells from the start at {cell_name(*s)} to the goal at {cell_name(*g)}", [s, g]
        )
    return grid


def _find(grid: np.ndarray, token: int) -> tuple[int, int]:
    r, c = np.argwhere(grid == token)[0]
    return int(r), int(c)


def _search(grid: np.ndarray, passable: np.ndarray, source: int = START_ID) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = grid.shape
    s = _find(grid, source)
    dist = np.empty(rows * cols, np.int64)
    count = np.empty(rows * cols, np.int64)
    bfs(passable.reshape(-1), rows, cols, s[0] * cols + s[1], dist, count)
    return dist, count


def _goal_index(grid: np.ndarray) -> int:
    r, c = _find(grid, GOAL_ID)
    return r * grid.shape[1] + c


def shortest_path_length(grid: np.ndarray) -> int:
    """Steps of the shortest S→G path through non-wall cells of a maze (-1 when there is none)."""
    dist, _ = _search(grid, grid != WALL_ID)
    return int(dist[_goal_index(grid)])


def shortest_path_count(grid: np.ndarray) -> int:
    """Number of shortest S→G paths, saturating at 2 (1 = the maze is Maze-Unique)."""
    _, count = _search(grid, grid != WALL_ID)
    return int(count[_goal_index(grid)])


def to_tokens(grid: np.ndarray) -> np.ndarray:
    """A maze or answer grid [rows, cols] (or a batch of them) to flat row-major token ids."""
    arr = np.asarray(grid, dtype=np.int64)
    return arr.reshape(*arr.shape[:-2], -1)


def from_tokens(tokens: np.ndarray, cols: int) -> np.ndarray:
    """Flat model output ids to an answer grid [rows, cols] of token ids."""
    return np.asarray(tokens, dtype=np.int8).reshape(-1, cols)


def to_string(grid: np.ndarray) -> str:
    return "\n".join(to_rows(grid))


def _answer_grid(answer: str | list | np.ndarray) -> np.ndarray | None:
    if isinstance(answer, np.ndarray):
        return answer.astype(np.int8)
    chars = chargrid.UNKNOWN_CHAR + CHARSET
    try:
        rows, _ = chargrid.read_rows(answer, "answer")
    except PuzzleError:
        return None
    if len({len(row) for row in rows}) != 1 or any(ch not in chars for row in rows for ch in row):
        return None
    return np.array([[chars.index(ch) for ch in row] for row in rows], dtype=np.int8)


def verify(puzzle: str | list | np.ndarray, answer: str | list | np.ndarray) -> bool:
    """True when ``answer`` marks a shortest S→G path of ``puzzle`` with ``o`` and changes nothing else.

    ``puzzle`` may be raw (it is parsed) or a parsed grid; ``answer`` rows, a string or a grid.
    The ``o`` cells must be open cells of the puzzle, number exactly one less than the shortest
    distance, and connect S to G on their own: then they are a shortest path and nothing more.
    """
    grid = puzzle if isinstance(puzzle, np.ndarray) else parse_maze(puzzle)
    ans = _answer_grid(answer)
    if ans is None or ans.shape != grid.shape:
        return False
    marked = ans == PATH_ID
    if not np.array_equal(np.where(marked, OPEN_ID, ans), grid):
        return False  # a wall, S or G changed, or a path mark sits on a non-open cell
    length = shortest_path_length(grid)
    dist, _ = _search(grid, marked | (grid == START_ID) | (grid == GOAL_ID))
    return int(marked.sum()) == length - 1 and int(dist[_goal_index(grid)]) == length


def _shifted(values: np.ndarray, fill: int) -> list[np.ndarray]:
    """``values`` [rows, cols] as seen from each cell's four neighbours (``fill`` beyond the border)."""
    padded = np.pad(values, 1, constant_values=fill)
    return [padded[1 + dr : padded.shape[0] - 1 + dr, 1 + dc : padded.shape[1] - 1 + dc] for dr, dc in STEPS]


def conflict_mask(grid: np.ndarray, answer: np.ndarray) -> np.ndarray:
    """Cells of ``answer`` [rows, cols] at fault against the maze ``grid``: a bool mask [rows, cols], all
    False exactly when the answer is valid.

    The path's rules, checked where they break rather than against one solution (a maze may have
    several shortest paths): a given changed; a path cell whose distances from S and from G do not add
    up to the shortest length (it lies on no shortest path); a path cell whose path neighbours are not
    exactly one a step nearer S and one a step farther (S and G count as path), or S or G without
    exactly one path neighbour. A path that keeps those rules runs from S to G in shortest steps and
    nothing else is marked (a loop has a cell nearest S, with two neighbours farther). The open cells
    next to a broken one are at fault too: a gap in the path is the unmarked cells between two
    dangling ends, and they must change for the path to close.
    """
    grid, answer = np.asarray(grid), np.asarray(answer)
    fixed = grid != OPEN_ID
    changed = np.where(fixed, answer != grid, (answer != OPEN_ID) & (answer != PATH_ID))
    marked = (answer == PATH_ID) & ~fixed
    ends = (grid == START_ID) | (grid == GOAL_ID)
    passable = grid != WALL_ID
    from_s = _search(grid, passable, START_ID)[0].reshape(grid.shape)
    from_g = _search(grid, passable, GOAL_ID)[0].reshape(grid.shape)
    on_shortest = (from_s >= 0) & (from_g >= 0) & (from_s + from_g == from_s[grid == GOAL_ID])
    path = marked | ends
    neighbours = list(zip(_shifted(path, False), _shifted(from_s, -2), strict=True))
    degree = sum(p.astype(np.int64) for p, _ in neighbours)
    nearer = sum((p & (d == from_s - 1)).astype(np.int64) for p, d in neighbours)
    farther = sum((p & (d == from_s + 1)).astype(np.int64) for p, d in neighbours)
    broken = (marked & (~on_shortest | (degree != 2) | (nearer != 1) | (farther != 1))) | (ends & (degree != 1))
    near = np.logical_or.reduce(_shifted(broken, False)) & ~fixed
    return changed | broken | near


def solution(grid: np.ndarray) -> np.ndarray:
    """The answer grid of a Maze-Unique maze: the one shortest path marked ``o``."""
    if shortest_path_count(grid) != 1:
        raise PuzzleError("maze has no unique shortest path from S to G")
    rows, cols = grid.shape
    dist, _ = _search(grid, grid != WALL_ID)
    ans = grid.copy().reshape(-1)
    v = _goal_index(grid)
    while dist[v] > 1:
        r, c = divmod(v, cols)
        for dr, dc in STEPS:
            u = (r + dr) * cols + c + dc
            if 0 <= r + dr < rows and 0 <= c + dc < cols and dist[u] == dist[v] - 1:
                v = u
                break
        ans[v] = PATH_ID
    return ans.reshape(rows, cols)


def read_jsonl(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Read a maze set written by :func:`write_jsonl`: puzzles, solutions [n, rows, cols], other fields."""
    puzzles, solutions, meta = [], [], []
    for where, doc in chargrid.read_docs(path):
        try:
            grid = parse_maze(doc.pop("puzzle"))
        except PuzzleError as exc:
            raise ValueError(f"{where}: {exc}") from exc
        answer = _answer_grid(doc.pop("solution"))
        if answer is None or not verify(grid, answer):
            raise ValueError(f"{where}: the solution does not mark a shortest path")
        puzzles.append(grid)
        solutions.append(answer)
        meta.append(doc)
    return np.stack(puzzles), np.stack(solutions), meta


class MazeTask(Task):
    """Maze-Unique on an N×N grid: rows of ``# SG`` in; answers as rows with the shortest path marked ``o``."""

    name = "maze"
    vocab_size = VOCAB_SIZE
    default_form = RowsForm.ROWS.value

    def __init__(self, size: int) -> None:
        self.size = size
        self.seq_len = size * size

    def spec(self) -> dict[str, Any]:
        return {"task": self.name, "grid": {"rows": self.size, "cols": self.size}}

    def parse(self, puzzle: object) -> Parsed:
        _, form = chargrid.read_rows(puzzle, "maze")
        return Parsed(to_tokens(parse_maze(puzzle, size=self.size)), form.value)  # type: ignore[arg-type]

    def board(self, tokens: np.ndarray, form: str | None = None) -> list[str] | str:
        return chargrid.shown(to_rows(from_tokens(tokens, self.size)), RowsForm(form or self.default_form))

    def verify(self, puzzle: np.ndarray, answer: np.ndarray) -> bool:
        return verify(from_tokens(puzzle, self.size), from_tokens(answer, self.size))

    def conflicts(self, puzzle: np.ndarray, answer: np.ndarray) -> np.ndarray:
        return conflict_mask(from_tokens(puzzle, self.size), from_tokens(answer, self.size)).reshape(-1)

    def allowed(self, puzzle: np.ndarray) -> np.ndarray:
        puzzle = np.asarray(puzzle)  # walls, S and G stay; an open cell stays open or becomes path
        mask = puzzle[..., None] == np.arange(VOCAB_SIZE)
        mask[..., PATH_ID] |= puzzle == OPEN_ID
        return mask

    def render(self) -> dict[str, Any]:
        return {"kind": "maze", "rows": self.size, "cols": self.size, "charset": CHARSET}

    def example(self) -> list[str]:
        return example_maze(self.size)

    def read_set(self, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
        puzzles, solutions, _ = read_jsonl(path)
        if puzzles.shape[1:] != (self.size, self.size):
            shape = "×".join(map(str, puzzles.shape[1:]))
            raise ValueError(f"{Path(path).name}: {shape} mazes, the model's are {self.size}×{self.size}")
        return to_tokens(puzzles), to_tokens(solutions)


@functools.cache
def example_maze(size: int) -> list[str]:
    """One generated maze of side ``size`` (fixed seed, a path about as long as the side): a real
    puzzle for documentation and the playground, the same on every machine."""
    from eqr.model.tasks.mazegen import MazeSpec, generate  # mazegen writes sets with this module

    length = max(2, min(size, 2 * size - 4))
    puzzles, _, _, _ = generate(1, MazeSpec(size=size, min_len=length, max_len=length), seed=EXAMPLE_SEED)
    return to_rows(from_tokens(puzzles[0], size))
