"""A fast exact Sudoku solver (numba) used by the generator and as a difficulty meter.

Bitmask candidates, naked + hidden singles propagation, then depth-first search on the cell
with the fewest candidates. ``nodes`` counts guesses, a solver-independent-enough measure of
how much search a puzzle needs (0 = solvable by propagation alone).
"""

from __future__ import annotations

import numba as nb
import numpy as np

_ALL = 0x3FE  # bits 1..9

# peer groups: for each cell, its row, column and box ids
_ROW = np.array([i // 9 for i in range(81)], dtype=np.int64)
_COL = np.array([i % 9 for i in range(81)], dtype=np.int64)
_BOX = np.array([(i // 27) * 3 + (i % 9) // 3 for i in range(81)], dtype=np.int64)
# the 27 units as lists of 9 cells
_UNITS = np.array(
    [[r * 9 + c for c in range(9)] for r in range(9)]
    + [[r * 9 + c for r in range(9)] for c in range(9)]
    + [[(b // 3) * 27 + (b % 3) * 3 + (k // 3) * 9 + k % 3 for k in range(9)] for b in range(9)],
    dtype=np.int64,
)


@nb.njit(cache=True)
def _popcount(x: int) -> int:
    n = 0
    while x:
        x &= x - 1
        n += 1
    return n


@nb.njit(cache=True)
def _propagate(g, hidden):
    """Fill forced cells in place. Returns (status, best_cell): status -1 contradiction, 1 solved, 0 open."""
    rows = np.zeros(9, np.int64)
    cols = np.zeros(9, np.int64)
    boxes = np.zeros(9, np.int64)
    while True:
        rows[:] = 0
        cols[:] = 0
        boxes[:] = 0
        for i in range(81):
            d = g[i]
            if d:
                bit = 1 << d
                if (rows[_ROW[i]] & bit) or (cols[_COL[i]] & bit) or (boxes[_BOX[i]] & bit):
                    return -1, -1
                rows[_ROW[i]] |= bit
                cols[_COL[i]] |= bit
                boxes[_BOX[i]] |= bit
        changed = False
        best = -1
        best_n = 10
        open_cells = 0
        for i in range(81):
            if g[i]:
                continue
            open_cells += 1
            cand = _ALL & ~(rows[_ROW[i]] | cols[_COL[i]] | boxes[_BOX[i]])
            n = _popcount(cand)
            if n == 0:
                return -1, -1
            if n == 1:
                d = 0
                while not (cand >> d) & 1:
                    d += 1
                g[i] = d
                bit = 1 << d
                rows[_ROW[i]] |= bit
                cols[_COL[i]] |= bit
                boxes[_BOX[i]] |= bit
                changed = True
            elif n < best_n:
                best_n = n
                best = i
        if open_cells == 0:
            return 1, -1
        if changed:
            continue
        if hidden:
            for u in range(27):
                for d in range(1, 10):
                    bit = 1 << d
                    where = -1
                    count = 0
                    for k in range(9):
                        c = _UNITS[u, k]
                        if g[c] == d:
                            count = 99
                            break
                        if g[c] == 0 and not ((rows[_ROW[c]] | cols[_COL[c]] | boxes[_BOX[c]]) & bit):
                            count += 1
                            where = c
                    if count == 0:
                        return -1, -1
                    if count == 1:
                        g[where] = d
                        changed = True
                        break
                if changed:
                    break
        if not changed:
            return 0, best


@nb.njit(cache=True)
def _search(grid, limit, randomize, solution):
    """Count solutions up to ``limit``; returns (count, nodes). First solution goes to ``solution``."""
    stack = np.zeros((82, 81), np.int8)
    cell_at = np.zeros(82, np.int64)
    tried = np.zeros(82, np.int64)
    stack[0, :] = grid
    depth = 0
    count = 0
    nodes = 0
    fresh = True
    while depth >= 0:
        if fresh:
            g = stack[depth]
            status, cell = _propagate(g, True)
            if status == 1:
                if count == 0:
                    solution[:] = g
                count += 1
                if count >= limit:
                    return count, nodes
                depth -= 1
                fresh = False
                continue
            if status == -1:
                depth -= 1
                fresh = False
                continue
            cell_at[depth] = cell
            tried[depth] = 0
        # try the next candidate of the branching cell at this depth
        g = stack[depth]
        cell = cell_at[depth]
        rowm = 0
        for k in range(9):
            rowm |= 1 << g[_ROW[cell] * 9 + k]
            rowm |= 1 << g[k * 9 + _COL[cell]]
            rowm |= 1 << g[_UNITS[18 + _BOX[cell], k]]
        cand = _ALL & ~rowm & ~tried[depth]
        if cand == 0:
            depth -= 1
            fresh = False
            continue
        n = _popcount(cand)
        pick = np.random.randint(n) if randomize else 0
        d = 0
        seen = -1
        while True:
            if (cand >> d) & 1:
                seen += 1
                if seen == pick:
                    break
            d += 1
        tried[depth] |= 1 << d
        nodes += 1
        stack[depth + 1, :] = g
        stack[depth + 1, cell] = d
        depth += 1
        fresh = True
    return count, nodes


@nb.njit(cache=True)
def _seed(seed):
    np.random.seed(seed)


def solve(digits, limit: int = 2) -> tuple[int, int, np.ndarray]:
    """Return (number of solutions up to ``limit``, search nodes, first solution)."""
    grid = np.asarray(digits, dtype=np.int8)
    sol = np.zeros(81, np.int8)
    count, nodes = _search(grid, limit, False, sol)
    return int(count), int(nodes), sol


def propagation_solves(digits) -> bool:
    """True when naked and hidden singles alone complete the puzzle (no guessing)."""
    g = np.asarray(digits, dtype=np.int8).copy()
    status, _ = _propagate(g, True)
    return status == 1


@nb.njit(cache=True)
def _make_puzzle(target_givens, sym):
    sol = np.zeros(81, np.int8)
    empty = np.zeros(81, np.int8)
    _search(empty, 1, True, sol)
    puzzle = sol.copy()
    order = np.random.permutation(81)
    scratch = np.zeros(81, np.int8)
    givens = 81
    for i in order:
        if givens <= target_givens:
            break
        if puzzle[i] == 0:
            continue
        j = 80 - i
        saved_i = puzzle[i]
        saved_j = puzzle[j]
        puzzle[i] = 0
        removed = 1
        if sym and j != i and puzzle[j] != 0 and givens - 2 >= target_givens:
            puzzle[j] = 0
            removed = 2
        count, _ = _search(puzzle, 2, False, scratch)
        if count == 1:
            givens -= removed
        else:
            puzzle[i] = saved_i
            puzzle[j] = saved_j
    return puzzle, sol


@nb.njit(cache=True)
def _make_batch(n, min_givens, max_givens, sym, out_p, out_s, out_nodes):
    scratch = np.zeros(81, np.int8)
    for k in range(n):
        target = np.random.randint(min_givens, max_givens + 1)
        p, s = _make_puzzle(target, sym)
        out_p[k, :] = p
        out_s[k, :] = s
        _, nodes = _search(p, 2, False, scratch)
        out_nodes[k] = nodes


def generate(
    n: int, min_givens: int = 17, max_givens: int = 45, seed: int = 0, symmetric: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Make ``n`` unique-solution puzzles with a given count drawn from [min_givens, max_givens].

    ``min_givens`` is a target: removal stops at a minimal puzzle, so hard targets (below ~22)
    yield minimal puzzles with a few more givens. Returns (puzzles, solutions, search nodes)
    as int8 digit arrays of shape [n, 81] (0 = blank) and an int64 array of shape [n].
    """
    _seed(seed)
    puzzles = np.zeros((n, 81), np.int8)
    solutions = np.zeros((n, 81), np.int8)
    nodes = np.zeros(n, np.int64)
    _make_batch(n, min_givens, max_givens, symmetric, puzzles, solutions, nodes)
    return puzzles, solutions, nodes
