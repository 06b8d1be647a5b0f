"""A seeded Maze-Unique generator (numba): mazes of every kind users draw, unique shortest paths.

Kinds of maze (:data:`KINDS`), so a model meets winding corridors, loops, open rooms and obstacles:

- *perfect*: a randomized depth-first (recursive-backtracker) maze carved on the odd cells of the
  grid; an even side leaves its last row and column as wall (the paper's 30×30 layout). A perfect
  maze is a tree, so every path in it is unique.
- *random*: every cell is a wall with a probability drawn per maze from a density range (down to
  no walls at all), sometimes inside a border wall.
- *braided*: a perfect maze with 1 to ``max_knocked`` walls between rooms knocked through: loops,
  so a dead end is no longer the only way a path can fail.
- *rooms*: recursive division of an open walled area into chambers joined by one or two doors,
  stopped early so chambers stay open rooms of several cells.

Outside perfect mazes most start/goal pairs have several shortest paths, so a pair is kept only
when BFS counts exactly one (the Maze-Unique task's answer is that path). A spec's ``kind`` is one
of these, or ``mixed``: perfect or random drawn per maze with ``p_perfect`` (the first eval sets).

The path length (BFS steps from S to G, so the answer marks length − 1 cells) is drawn first,
uniformly from [min_len, max_len], and a maze and a start are drawn until some goal lies at exactly
that distance along a unique shortest path: the length distribution is the chosen one, not what
the mazes happen to give. :func:`kind_spec` gives each kind the lengths it can reach at a size.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

import numba as nb
import numpy as np
from tqdm import tqdm

from eqr.model.tasks.mazegrid import GOAL_ID, OPEN_ID, PATH_ID, START_ID, WALL_ID, bfs, write_jsonl

KINDS = ("perfect", "random", "braided", "rooms")  # the index is the kind's id in generated sets
MIXED = "mixed"  # perfect or random per maze (p_perfect): the first eval sets, kept reproducible
CHUNK = 1000  # mazes per numba call; the progress bar advances by chunks
MAX_TRIES = 20_000  # mazes drawn for one target length before giving up on it


@dataclass(frozen=True)
class MazeSpec:
    """What to generate: grid side, path-length range, the kind, and each kind's knobs."""

    size: int = 13
    min_len: int = 2
    max_len: int = 40
    kind: str = MIXED  # one of KINDS, or MIXED
    p_perfect: float = 0.3  # MIXED: realised share is higher, random-wall mazes rarely give long unique paths
    min_density: float = 0.2  # random (and MIXED's random-wall mazes): wall density range
    max_density: float = 0.45
    max_knocked: int = 5  # braided: walls knocked through, 1..max_knocked

    def __post_init__(self) -> None:
        if self.size < 3:
            raise ValueError("maze size must be at least 3")
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError("path lengths need 1 <= min_len <= max_len")
        if self.kind != MIXED and self.kind not in KINDS:
            raise ValueError(f"maze kind must be {MIXED!r} or one of {', '.join(KINDS)}, got {self.kind!r}")

    @property
    def kind_id(self) -> int:
        """The kind as the generator takes it: its index in KINDS, -1 for MIXED."""
        return -1 if self.kind == MIXED else KINDS.index(self.kind)


# the longest unique shortest path each kind reaches reliably, as a share of the grid's cells
# (measured at 11×11: perfect, braided and rooms 30 steps, random 26)
_REACH = {"perfect": 0.25, "braided": 0.25, "random": 0.215, "rooms": 0.25}


def kind_spec(kind: str, size: int) -> MazeSpec:
    """The standard spec of one kind at one size: the same for training and for the eval sets.

    Lengths from 2 to what the kind reaches; random walls over densities from none to 0.45. The reach
    is calibrated for boards up to 11×11: larger boards need a shorter ``max_len`` for random and rooms.
    """
    max_len = max(2, round(_REACH[kind] * size * size))
    density = (0.0, 0.45) if kind == "random" else (MazeSpec.min_density, MazeSpec.max_density)
    return MazeSpec(size, 2, max_len, kind, min_density=density[0], max_density=density[1])


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
def _wall_border(grid, size):
    for i in range(size):
        grid[i] = WALL_ID
        grid[(size - 1) * size + i] = WALL_ID
        grid[i * size] = WALL_ID
        grid[i * size + size - 1] = WALL_ID


@nb.njit(cache=True)
def _knock_through(grid, size, k):
    """Open ``k`` random walls between two rooms of a perfect maze (each one closes a loop)."""
    walls = np.empty(size * size, np.int64)
    n = 0
    for r in range(1, size - 1):
        for c in range(1, size - 1):
            v = r * size + c
            if grid[v] != WALL_ID or (r + c) % 2 == 0:  # pillars sit at even-even, rooms at odd-odd
                continue
            step = 1 if r % 2 == 1 else size  # the rooms it separates: left/right, or above/below
            if grid[v - step] != WALL_ID and grid[v + step] != WALL_ID:
                walls[n] = v
                n += 1
    for _ in range(min(k, n)):
        j = np.random.randint(n)
        grid[walls[j]] = OPEN_ID
        n -= 1
        walls[j] = walls[n]


@nb.njit(cache=True)
def _divide_rooms(grid, size):
    """Recursive division of the walled area into chambers of whole rooms, one or two doors per wall;
    a chamber stops dividing at a random size, so open rooms of several cells remain."""
    grid[:] = OPEN_ID
    _wall_border(grid, size)
    rooms = (size - 1) // 2
    for i in range(2 * rooms + 1, size):  # an even side: the last row and column stay wall
        for j in range(size):
            grid[i * size + j] = WALL_ID
            grid[j * size + i] = WALL_ID
    stack = np.empty((4 * rooms * rooms + 4, 4), np.int64)  # chambers in room coordinates r0, c0, r1, c1
    stack[0, 0], stack[0, 1], stack[0, 2], stack[0, 3] = 0, 0, rooms - 1, rooms - 1
    top = 1
    while top > 0:
        top -= 1
        r0, c0, r1, c1 = stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3]
        h, w = r1 - r0 + 1, c1 - c0 + 1
        if h * w <= 1 + np.random.randint(12) or (h < 2 and w < 2):
            continue
        horizontal = w < 2 or (h >= 2 and (h > w or (h == w and np.random.random() < 0.5)))
        lo, hi = (r0, r1) if horizontal else (c0, c1)
        k = lo + np.random.randint(hi - lo)  # the wall goes between room k and k + 1
        a0, a1 = (c0, c1) if horizontal else (r0, r1)
        doors = 1 + (np.random.random() < 0.3)
        for j in range(2 * a0 + 1, 2 * a1 + 2):
            v = (2 * k + 2) * size + j if horizontal else j * size + 2 * k + 2
            grid[v] = WALL_ID
        for _ in range(doors):
            d = 2 * (a0 + np.random.randint(a1 - a0 + 1)) + 1
            grid[(2 * k + 2) * size + d if horizontal else d * size + 2 * k + 2] = OPEN_ID
        if horizontal:
            stack[top] = (r0, c0, k, c1)
            stack[top + 1] = (k + 1, c0, r1, c1)
        else:
            stack[top] = (r0, c0, r1, k)
            stack[top + 1] = (r0, k + 1, r1, c1)
        top += 2


@nb.njit(cache=True)
def _draw_maze(grid, size, kind, p_perfect, min_density, max_density, max_knocked):
    """Draw one maze of ``kind`` (-1: perfect or random with ``p_perfect``) into ``grid``; its kind."""
    mixed = kind < 0
    if mixed:
        kind = 0 if np.random.random() < p_perfect else 1
    if kind == 0 or kind == 2:
        _carve_perfect(grid, size)
        if kind == 2:
            _knock_through(grid, size, 1 + np.random.randint(max_knocked))
    elif kind == 1:
        _scatter_walls(grid, min_density + (max_density - min_density) * np.random.random())
        if not mixed and np.random.random() < 0.3:  # drawn mazes often have a frame
            _wall_border(grid, size)
    else:
        _divide_rooms(grid, size)
    return kind


@nb.njit(cache=True)
def _make_maze(size, length, kind, p_perfect, min_density, max_density, max_knocked, puzzle, answer):
    """Fill ``puzzle``/``answer`` with a maze whose unique shortest path has ``length`` steps.

    Returns the kind (index into KINDS) or -1 when ``MAX_TRIES`` mazes had no such path.
    """
    n = size * size
    dist = np.empty(n, np.int64)
    count = np.empty(n, np.int64)
    cells = np.empty(n, np.int64)
    for _ in range(MAX_TRIES):
        drawn = _draw_maze(puzzle, size, kind, p_perfect, min_density, max_density, max_knocked)
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
            return drawn
    return -1


@nb.njit(cache=True)
def _make_batch(size, lengths, kind, p_perfect, min_density, max_density, max_knocked, out_p, out_s, out_kind):
    for k in range(lengths.size):
        out_kind[k] = _make_maze(
            size, lengths[k], kind, p_perfect, min_density, max_density, max_knocked, out_p[k], out_s[k]
        )
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
                spec.size, lengths[lo:hi], spec.kind_id, spec.p_perfect, spec.min_density, spec.max_density,
                spec.max_knocked, puzzles[lo:hi], solutions[lo:hi], kinds[lo:hi],
            )  # fmt: skip
            if done < hi - lo:
                raise ValueError(
                    f"no {spec.size}x{spec.size} maze with a unique shortest path of {lengths[lo + done]} steps "
                    f"in {MAX_TRIES} tries: lower max_len"
                )
            bar.update(hi - lo)
    return puzzles, solutions, lengths, kinds


def main(argv: list[str] | None = None) -> None:
    """Write an eval set: ``python -m eqr.model.tasks.mazegen --size 11 --kind braided --n 300 --seed S --out F``.

    A kind's lengths and knobs are its :func:`kind_spec` unless given; ``mixed`` needs the lengths.
    """
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--kind", choices=(MIXED, *KINDS), default=MIXED)
    p.add_argument("--min-len", type=int)
    p.add_argument("--max-len", type=int)
    p.add_argument("--p-perfect", type=float, default=MazeSpec.p_perfect)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.kind == MIXED:
        if args.min_len is None or args.max_len is None:
            p.error("--kind mixed needs --min-len and --max-len")
        spec = MazeSpec(size=args.size, min_len=args.min_len, max_len=args.max_len, p_perfect=args.p_perfect)
    else:
        spec = kind_spec(args.kind, args.size)
        lengths = {"min_len": args.min_len or spec.min_len, "max_len": args.max_len or spec.max_len}
        spec = dataclasses.replace(spec, **lengths)
    puzzles, solutions, lengths, kinds = generate(args.n, spec, seed=args.seed, progress=True)
    shape = (args.n, args.size, args.size)
    meta = [{"length": int(n), "kind": KINDS[k]} for n, k in zip(lengths, kinds, strict=True)]
    write_jsonl(args.out, puzzles.reshape(shape), solutions.reshape(shape), meta)


if __name__ == "__main__":
    main()
