"""Where the default models live: torch-free, so processes that never load a model (the Redis API
node, the SDK's tests) can name them without importing torch."""

from __future__ import annotations

import os
from pathlib import Path

# the models shipped in the repository; EQR_MODEL (comma-separated folders) overrides them everywhere
MODELS = Path(__file__).resolve().parents[2] / "models"
BUNDLED_MODEL = MODELS / "sudoku-small"
BUNDLED_MODELS = (BUNDLED_MODEL, MODELS / "maze-small")


def default_model_dirs() -> list[Path]:
    """What a server serves when told nothing: both bundled models, or the folders in ``$EQR_MODEL``."""
    named = [p.strip() for p in os.environ.get("EQR_MODEL", "").split(",") if p.strip()]
    return [Path(p) for p in named] if named else list(BUNDLED_MODELS)


def default_model_dir() -> Path:
    """The one model a single-model tool (eval, solve, benchmarks) uses by default: the first served."""
    return default_model_dirs()[0]
