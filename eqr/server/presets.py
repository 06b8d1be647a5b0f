"""Named sets of request parameters: a request that names a preset gets its values for every field it
leaves out (a field it sets wins). Torch-free, so the Redis API node expands presets as ``eqr serve`` does.

``paper`` is the official Sudoku evaluation protocol of the EqR paper (the ACT-streaming configs at
``locuslab/EqR`` ``e993482``; docs/paper-protocol.md): depth 64, 128 random starts, noise 0.5, learned
halting (``q_halt > 0``), and the answer of the most-converged trajectory (the first of the evaluator's
convergence top-k). It is meant for converted paper checkpoints; the small bundled models were not
trained for noise 0.5.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"depth": 64, "breadth": 128, "noise": 0.5, "halt": "q_halt", "aggregate": "converged"},
}
