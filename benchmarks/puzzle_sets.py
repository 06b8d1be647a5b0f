"""Where the benchmarks find Sudoku sets: the full public sets in shared/, else the small copies in the repo.

shared/ lies beside the checkout on this project's machines (``../shared/data/sudoku``);
``EQR_SUDOKU_DATA`` points elsewhere. Paths are found relative to the checkout, never spelled out,
so nothing here names a machine.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EQR_SUDOKU_DATA", ROOT.parent / "shared" / "data" / "sudoku"))
BUNDLED = Path(__file__).parent / "puzzles"


def shown(path: Path) -> str:
    """A path as a report should print it: relative to the checkout when inside it, else its name."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def read_set(path: Path, limit: int | None) -> tuple[list[str], list[str]]:
    """The first ``limit`` puzzles of a puzzle,solution CSV and their solutions (comments and header skipped)."""
    with path.open() as fh:
        rows = [r for r in csv.reader(fh) if r and not r[0].startswith(("#", "puzzle"))]
    rows = rows[:limit]
    return [r[0] for r in rows], [r[1] for r in rows]
