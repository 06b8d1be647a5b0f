"""Training data for each task, as token arrays: a stream of training rows and fixed held-out sets.

Sudoku: two pools come from the project's own generator (never from the public evaluation sets):
``mixed`` (any difficulty, a range of given counts) and ``hard`` (minimal puzzles that need the
most search, the kind the paper trains on), multiplied by augmentation and mixed by a curriculum.
Pools are cached as ``.npz`` so a resumed run does not regenerate them.

Maze: generating a maze costs microseconds, so every refill draws fresh mazes (no pool, no
augmentation), of every kind in the shares a :class:`MazeMix` gives, each kind at its standard spec
(:func:`~eqr.model.tasks.mazegen.kind_spec`, which the committed per-kind eval sets use too) or
within a band of path lengths the mix names (``"random:14-24"``: more of the lengths a model misses).
Training draws generator seeds from [TRAIN_SEED_MIN, 2**62) and the held-out sets use fixed seeds
below it (:func:`maze_eval_seed`), so no training maze comes from an eval stream.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from eqr.model.tasks import solver
from eqr.model.tasks.augment import augment
from eqr.model.tasks.mazegen import KINDS, MazeSpec, generate, kind_spec
from eqr.model.tasks.sudoku import to_tokens

CHUNK = 2000
TRAIN_SEED_MIN = 2**32  # maze training seeds start here; eval seeds stay below
MAZE_EVAL_SEED_BASE = 1_000_000

Tokens = tuple[np.ndarray, np.ndarray]  # (puzzles, labels) as token ids [n, cells]


@dataclass(frozen=True)
class DataConfig:
    mixed_puzzles: int = 100_000
    min_givens: int = 17
    max_givens: int = 45
    hard_candidates: int = 120_000  # minimal puzzles generated to pick the hard pool from
    hard_min_nodes: int = 8  # search nodes a kept hard puzzle needs at least
    p_hard_start: float = 0.25
    p_hard_end: float = 0.6
    curriculum_fraction: float = 0.4  # share of training over which p_hard ramps up
    seed: int = 0
    workers: int = 2


def _chunk(args: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, lo, hi, seed = args
    return solver.generate(n, lo, hi, seed=seed)


def _generate(n: int, lo: int, hi: int, seed: int, workers: int, desc: str) -> tuple[np.ndarray, ...]:
    jobs = [(min(CHUNK, n - i), lo, hi, seed * 1_000_003 + i) for i in range(0, n, CHUNK)]
    parts = []
    with ProcessPoolExecutor(max_workers=workers) as pool, tqdm(total=n, desc=desc, unit="puzzle") as bar:
        for part in pool.map(_chunk, jobs):
            parts.append(part)
            bar.update(len(part[0]))
    return tuple(np.concatenate(x) for x in zip(*parts, strict=True))


def build_pools(cfg: DataConfig, cache_dir: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Generate (or load from ``cache_dir``) the ``mixed`` and ``hard`` pools as digit arrays."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    key = (
        f"s{cfg.seed}-m{cfg.mixed_puzzles}-{cfg.min_givens}-{cfg.max_givens}"
        f"-h{cfg.hard_candidates}-{cfg.hard_min_nodes}"
    )
    path = cache / f"pools-{key}.npz"
    if path.exists():
        data = np.load(path)
        return {"mixed": (data["mixed_p"], data["mixed_s"]), "hard": (data["hard_p"], data["hard_s"])}
    mp, ms, _ = _generate(cfg.mixed_puzzles, cfg.min_givens, cfg.max_givens, cfg.seed, cfg.workers, "mixed pool")
    hp, hs, nodes = _generate(cfg.hard_candidates, 17, 17, cfg.seed + 1, cfg.workers, "hard candidates")
    keep = nodes >= cfg.hard_min_nodes
    np.savez_compressed(path, mixed_p=mp, mixed_s=ms, hard_p=hp[keep], hard_s=hs[keep])
    return {"mixed": (mp, ms), "hard": (hp[keep], hs[keep])}


class PuzzleSampler:
    """Draws augmented training puzzles; the share of hard ones follows the curriculum."""

    def __init__(self, pools: dict[str, tuple[np.ndarray, np.ndarray]], cfg: DataConfig, seed: int) -> None:
        self.pools = pools
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)

    def p_hard(self, progress: float) -> float:
        ramp = min(1.0, progress / max(self.cfg.curriculum_fraction, 1e-9))
        return self.cfg.p_hard_start + (self.cfg.p_hard_end - self.cfg.p_hard_start) * ramp

    def sample(self, n: int, progress: float) -> tuple[np.ndarray, np.ndarray]:
        """``n`` (puzzle, solution) digit arrays [n, 81] at training ``progress`` in [0, 1]."""
        hard = self.rng.random(n) < self.p_hard(progress)
        out_p = np.empty((n, 81), np.int8)
        out_s = np.empty((n, 81), np.int8)
        for name, mask in (("hard", hard), ("mixed", ~hard)):
            k = int(mask.sum())
            if k:
                p, s = self.pools[name]
                idx = self.rng.integers(0, len(p), k)
                out_p[mask], out_s[mask] = augment(p[idx], s[idx], self.rng)
        return out_p, out_s


def maze_eval_seed(size: int, kind: str | None = None, draw: int = 0) -> int:
    """The fixed generator seed of the held-out mazes of side ``size``: of one kind (the per-kind sets),
    or of the first mixed sets (``kind`` None). Committed sets and training evals use them. ``draw`` 1
    is a second, larger draw of the same kinds (the confirmation sets), kept apart from the first so
    that a model chosen on the first is still measured on mazes nobody chose by."""
    return MAZE_EVAL_SEED_BASE + 10_000 * draw + (0 if kind is None else 1000 * (KINDS.index(kind) + 1)) + size


def _default_shares() -> dict[str, float]:
    # the kinds the first model met least (loops, rooms, obstacles) weigh most
    return {"perfect": 0.1, "braided": 0.25, "rooms": 0.2, "random": 0.45}


def band_spec(entry: str, size: int) -> MazeSpec:
    """The spec of one entry of a mix: ``kind`` (its standard spec) or ``kind:lo-hi`` (the same spec
    with path lengths drawn from lo to hi steps, inside the kind's reach at this size)."""
    kind, _, band = entry.partition(":")
    if kind not in KINDS:
        raise ValueError(f"unknown maze kind {kind!r} in {entry!r}; kinds are {', '.join(KINDS)}")
    spec = kind_spec(kind, size)
    if not band:
        return spec
    lo, dash, hi = band.partition("-")
    if not (dash and lo.isdigit() and hi.isdigit()):
        raise ValueError(f"maze mix entry {entry!r}: a length band is written kind:lo-hi, e.g. random:14-24")
    if not spec.min_len <= int(lo) <= int(hi) <= spec.max_len:
        raise ValueError(
            f"maze mix entry {entry!r}: {kind} path lengths at {size}x{size} lie in {spec.min_len}-{spec.max_len}"
        )
    return replace(spec, min_len=int(lo), max_len=int(hi))


@dataclass(frozen=True)
class MazeMix:
    """What maze training draws: a board side and the share of each entry, an entry being a kind at its
    standard spec or a kind within a band of path lengths (:func:`band_spec`)."""

    size: int = 11
    kinds: dict[str, float] = field(default_factory=_default_shares)

    def __post_init__(self) -> None:
        for entry in self.kinds:
            band_spec(entry, self.size)  # refuses an unknown kind or a band it cannot reach
        if not self.kinds or min(self.kinds.values()) < 0 or sum(self.kinds.values()) <= 0:
            raise ValueError("maze kind shares must be non-negative and not all zero")

    @property
    def base_kinds(self) -> list[str]:
        """The kinds the mix draws, each once, in the mix's order (a band counts as its kind)."""
        return list(dict.fromkeys(entry.partition(":")[0] for entry in self.kinds))


class MazeSampler:
    """Draws fresh generated mazes of the mix's kinds; seeds come from a seeded stream above
    :data:`TRAIN_SEED_MIN`."""

    def __init__(self, mix: MazeMix, seed: int) -> None:
        self.specs = [band_spec(entry, mix.size) for entry in mix.kinds]
        weights = np.array(list(mix.kinds.values()), dtype=np.float64)
        self.shares = weights / weights.sum()
        self.rng = np.random.default_rng(seed)

    def next_seed(self) -> int:
        return int(self.rng.integers(TRAIN_SEED_MIN, 2**62))

    def sample(self, n: int, progress: float) -> Tokens:
        """``n`` (maze, answer) token arrays, kinds drawn by share and shuffled; ``progress`` is unused
        (no maze curriculum)."""
        counts = self.rng.multinomial(n, self.shares)
        parts = [generate(k, spec, seed=self.next_seed())[:2] for spec, k in zip(self.specs, counts, strict=True) if k]
        order = self.rng.permutation(n)
        return tuple(np.concatenate(x)[order] for x in zip(*parts, strict=True))  # type: ignore[return-value]


@dataclass(frozen=True)
class TaskData:
    """What training needs from a task: ``sample(n, progress)`` rows, held-out sets, model-folder metadata."""

    sample: Callable[[int, float], Tokens]
    eval_sets: dict[str, Tokens]
    meta: dict[str, Any]


def sudoku_data(cfg: DataConfig, cache_dir: str | Path, seed: int, eval_n: int) -> TaskData:
    """The pools and curriculum sampler, and held-out generated puzzles (seeds disjoint from the pools)."""
    pools = build_pools(cfg, cache_dir)
    print(f"pools: mixed {len(pools['mixed'][0])}, hard {len(pools['hard'][0])}")
    sampler = PuzzleSampler(pools, cfg, seed)
    p, s, _ = solver.generate(eval_n, cfg.min_givens, cfg.max_givens, seed=10_000_019 + cfg.seed)
    hp, hs, nodes = solver.generate(4 * eval_n, 17, 17, seed=20_000_003 + cfg.seed)
    keep = np.nonzero(nodes >= cfg.hard_min_nodes)[0][:eval_n]
    return TaskData(
        sample=lambda n, progress: tuple(to_tokens(x) for x in sampler.sample(n, progress)),
        eval_sets={"mixed": (to_tokens(p), to_tokens(s)), "hard": (to_tokens(hp[keep]), to_tokens(hs[keep]))},
        meta={"task": "sudoku"},
    )


def maze_data(mix: MazeMix, seed: int, eval_n: int) -> TaskData:
    """Fresh mazes of every kind for training; the first ``eval_n`` mazes of each kind's held-out
    stream (the committed per-kind sets' first mazes) for evaluation."""
    eval_sets = {}
    for kind in mix.base_kinds:
        puzzles, solutions, _, _ = generate(eval_n, kind_spec(kind, mix.size), seed=maze_eval_seed(mix.size, kind))
        eval_sets[kind] = (puzzles, solutions)
    return TaskData(
        sample=MazeSampler(mix, seed).sample,
        eval_sets=eval_sets,
        meta={"task": "maze", "grid": {"rows": mix.size, "cols": mix.size}},
    )
