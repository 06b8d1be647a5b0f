"""The paper's Sudoku augmentations (eqr.md §3), vectorised over a batch.

Digit relabelling, transpose, band and row-within-band permutations, stack and
column-within-stack permutations. None of them changes a puzzle's difficulty or uniqueness,
so a small pool of hard puzzles becomes millions of distinct training examples.
"""

from __future__ import annotations

import numpy as np


def _line_perm(rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, 9] permutations of rows (or columns) that keep bands (stacks) together."""
    bands = np.argsort(rng.random((n, 3)), axis=1)
    within = np.argsort(rng.random((n, 3, 3)), axis=2)
    return (3 * bands[:, :, None] + within).reshape(n, 9)


def augment(puzzles: np.ndarray, solutions: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Apply one random symmetry per row to digit arrays [n, 81] (0 = blank)."""
    n = puzzles.shape[0]
    rows, cols = _line_perm(rng, n), _line_perm(rng, n)
    straight = rows[:, :, None] * 9 + cols[:, None, :]
    transposed = cols[:, None, :] * 9 + rows[:, :, None]
    flip = rng.random(n) < 0.5
    index = np.where(flip[:, None, None], transposed, straight).reshape(n, 81)
    relabel = np.concatenate([np.zeros((n, 1), np.int64), 1 + np.argsort(rng.random((n, 9)), axis=1)], axis=1)
    take = np.arange(n)[:, None]
    p = relabel[take, np.take_along_axis(puzzles.astype(np.int64), index, axis=1)]
    s = relabel[take, np.take_along_axis(solutions.astype(np.int64), index, axis=1)]
    return p.astype(puzzles.dtype), s.astype(solutions.dtype)
