"""A seeded Maze-Unique generator (numba): perfect mazes and random-wall mazes, unique shortest paths.

Two kinds of maze, so a model meets both long winding corridors and open rooms with obstacles:

- *perfect*: a randomized depth-first (recursive-backtracker) maze carved on the odd cells of the
  grid; an even side leaves its last row and column as wall (the paper's 30×30 layout). A perfect
  maze is a tree, so every path in it is unique.
- *random-wall*: every cell is a wall with a probability drawn per maze from a density range; here
  most start/goal pairs have several shortest paths, so a pair is kept only when BFS counts exactly one.

The path length (BFS steps from S to G, so the answer marks length − 1 cells) is drawn first,
uniformly from [min_len, max_len], and a maze and a start are drawn until some goal lies at exactly
that distance along a unique shortest path: the length distribution is the chosen one, not what
the mazes happen to give. Long lengths are reached mostly by perfect mazes.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numba as nb
import numpy as np
from tqdm import tqdm

from eqr.model.tasks.maze import GOAL_ID, OPEN_ID, PATH_ID, START_ID, WALL_ID, bfs, write_jsonl

KINDS = ("perfect", "random")
CHUNK = 1000  # mazes per numba call; the progress bar advances by chunks
MAX_TRIES = 20_000  # mazes drawn for one target length before giving up on it


@dataclass(frozen=True)
class MazeSpec:
    """What to generate: grid side, path-length range, the share of perfect mazes, wall density."""

    size: int = 13
    min_len: int = 2
    max_len: int = 40
    p_perfect: float = 0.3  # realised share is higher: random-wall mazes rarely give long unique paths
    min_density: float = 0.2
    max_density: float = 0.45

    def __post_init__(self) -> None:
        if self.size < 3:
            raise ValueError("maze size must be at least 3")
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError("path lengths need 1 <= min_len <= max_len")


@nb.njit(cache=True)
def _seed(seed):
    np.random.seed(seed)


@nb.njit(cache=True)
def _carve_perfect(grid, size):
    """Recursive-backtracker maze on the odd cells of ``grid`` (flat, size × size)."""
    grid[:] = WALL_ID
    rooms = (size - 1) // 2  # rooms per side, at coordinates 1, 3, ..., 2 * rooms - 1
    seen = np.zeros(rooms * rooms, np.bool_)
    stack = np.empty(rooms * rooms, np.int64)
    nbrs = np.empty(4, np.int64)
    start = np.random.randint(rooms * rooms)
    seen[start] = True
    stack[0] = start
    top = 1
    grid[(2 * (start // rooms) + 1) * size + 2 * (start % rooms) + 1] = OPEN_ID
    while top > 0:
        v = stack[top - 1]
        r, c = v // rooms, v % rooms
        k = 0
        if r > 0 and not seen[v - rooms]:
            nbrs[k] = v - rooms
            k += 1
        if r < rooms - 1 and not seen[v + rooms]:
            nbrs[k] = v + rooms
            k += 1
        if c > 0 and not seen[v - 1]:
            nbrs[k] = v - 1
            k += 1
        if c < rooms - 1 and not seen[v + 1]:
            nbrs[k] = v + 1
            k += 1
        if k == 0:
            top -= 1
            continue
        u = nbrs[np.random.randint(k)]
        seen[u] = True
        stack[top] = u
        top += 1
        ur, uc = u // rooms, u % rooms
        grid[(2 * ur + 1) * size + 2 * uc + 1] = OPEN_ID
        grid[(r + ur + 1) * size + c + uc + 1] = OPEN_ID  # the wall between the two rooms


@nb.njit(cache=True)
def _scatter_walls(grid, density):
    for i in range(grid.size):
        grid[i] = WALL_ID if np.random.random() < density else OPEN_ID


@nb.njit(cache=True)
def _make_maze(size, length, p_perfect, min_density, max_density, puzzle, answer):
    """Fill ``puzzle``/``answer`` with a maze whose unique shortest path has ``length`` steps.

    Returns the kind (0 perfect, 1 random-wall) or -1 when ``MAX_TRIES`` mazes had no such path.
    """
    n = size * size
    dist = np.empty(n, np.int64)
    count = np.empty(n, np.int64)
    cells = np.empty(n, np.int64)
    for _ in range(MAX_TRIES):
        kind = 0 if np.random.random() < p_perfect else 1
        if kind == 0:
            _carve_perfect(puzzle, size)
        else:
            _scatter_walls(puzzle, min_density + (max_density - min_density) * np.random.random())
        passable = puzzle != WALL_ID
        n_open = 0
        for i in range(n):
            if passable[i]:
                cells[n_open] = i
                n_open += 1
        if n_open < length + 1:
            continue
        for _start_try in range(4):
            s = cells[np.random.randint(n_open)]
            bfs(passable, size, size, s, dist, count)
            n_goal = 0
            for i in range(n):
                if dist[i] == length and count[i] == 1:
                    cells[n_goal] = i  # overwrites the open-cell list, no longer needed once a goal exists
                    n_goal += 1
            if n_goal == 0:
                continue
            g = cells[np.random.randint(n_goal)]
            answer[:] = puzzle
            v = g
            while dist[v] > 1:  # walk back along the unique shortest path
                r, c = v // size, v % size
                if r > 0 and dist[v - size] == dist[v] - 1:
                    v -= size
                elif r < size - 1 and dist[v + size] == dist[v] - 1:
                    v += size
                elif c > 0 and dist[v - 1] == dist[v] - 1:
                    v -= 1
                else:
                    v += 1
                answer[v] = PATH_ID
            puzzle[s] = START_ID
            puzzle[g] = GOAL_ID
            answer[s] = START_ID
            answer[g] = GOAL_ID
            return kind
    return -1


@nb.njit(cache=True)
def _make_batch(size, lengths, p_perfect, min_density, max_density, out_p, out_s, out_kind):
    for k in range(lengths.size):
        out_kind[k] = _make_maze(size, lengths[k], p_perfect, min_density, max_density, out_p[k], out_s[k])
        if out_kind[k] < 0:
            return k
    return lengths.size


def generate(
    n: int, spec: MazeSpec, seed: int = 0, progress: bool | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Make ``n`` Maze-Unique mazes; the same (spec, seed) always gives the same mazes.

    Returns (puzzles, solutions) as int8 token arrays [n, size * size], the path lengths [n] and
    the kinds [n] (index into :data:`KINDS`). ``progress`` shows a bar (default: for n > CHUNK).
    """
    rng = np.random.default_rng(seed)
    _seed(int(rng.integers(0, 2**31)))  # drawn before the lengths, so a longer set extends a shorter one
    lengths = rng.integers(spec.min_len, spec.max_len + 1, n)
    cells = spec.size * spec.size
    puzzles = np.zeros((n, cells), np.int8)
    solutions = np.zeros((n, cells), np.int8)
    kinds = np.zeros(n, np.int64)
    show = n > CHUNK if progress is None else progress
    with tqdm(total=n, desc=f"mazes {spec.size}x{spec.size}", unit="maze", disable=not show) as bar:
        for lo in range(0, n, CHUNK):
            hi = min(n, lo + CHUNK)
            done = _make_batch(
                spec.size, lengths[lo:hi], spec.p_perfect, spec.min_density, spec.max_density,
                puzzles[lo:hi], solutions[lo:hi], kinds[lo:hi],
            )  # fmt: skip
            if done < hi - lo:
                raise ValueError(
                    f"no {spec.size}x{spec.size} maze with a unique shortest path of {lengths[lo + done]} steps "
                    f"in {MAX_TRIES} tries: lower max_len"
                )
            bar.update(hi - lo)
    return puzzles, solutions, lengths, kinds


def main(argv: list[str] | None = None) -> None:
    """Write an eval set: ``python -m eqr.model.tasks.mazegen --size 13 --n 1000 --seed S --out F``."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--min-len", type=int, required=True)
    p.add_argument("--max-len", type=int, required=True)
    p.add_argument("--p-perfect", type=float, default=MazeSpec.p_perfect)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    spec = MazeSpec(size=args.size, min_len=args.min_len, max_len=args.max_len, p_perfect=args.p_perfect)
    puzzles, solutions, lengths, kinds = generate(args.n, spec, seed=args.seed, progress=True)
    shape = (args.n, args.size, args.size)
    meta = [{"length": int(n), "kind": KINDS[k]} for n, k in zip(lengths, kinds, strict=True)]
    write_jsonl(args.out, puzzles.reshape(shape), solutions.reshape(shape), meta)


if __name__ == "__main__":
    main()
