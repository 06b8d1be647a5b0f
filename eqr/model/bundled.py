"""Where the default model lives: torch-free, so processes that never load a model (the Redis API
node, the SDK's tests) can name it without importing torch."""

from __future__ import annotations

import os
from pathlib import Path

# the model shipped in the repository; EQR_MODEL overrides it everywhere a default model is used
BUNDLED_MODEL = Path(__file__).resolve().parents[2] / "models" / "sudoku-small"


def default_model_dir() -> Path:
    return Path(os.environ.get("EQR_MODEL", BUNDLED_MODEL))
