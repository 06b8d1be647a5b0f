"""Summary statistics the benchmarks print, defined once so every table means the same thing."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile, interpolated linearly between the nearest samples (NaN for none)."""
    return float(np.percentile(values, q)) if len(values) else float("nan")
