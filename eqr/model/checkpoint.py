"""The project's own checkpoint format: ``model.safetensors`` + ``config.json`` in one folder.

safetensors holds only tensors, so loading a model never executes code; the JSON carries the
task, the architecture, the training recipe and measured accuracy, so a model folder is
self-describing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from eqr.model.config import EqRConfig
from eqr.model.network import EqRNetwork

FORMAT = "eqr-serve/1"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
# what a folder's ``inference`` block may hold: the engine's defaults for a request that leaves a field
# out (eqr.server.engine.plan.ModelDefaults.from_folder reads them and checks their values)
INFERENCE_KEYS = (
    "depth", "noise", "window", "tol", "aggregate", "breadth_mode", "verify", "verify_depth", "verify_budget",
    "restart", "stuck_after", "presets",
)  # fmt: skip


class CheckpointError(ValueError):
    """A model folder that cannot be loaded; the message says which file and why."""


def save_model(path: str | Path, model: EqRNetwork, meta: dict[str, Any] | None = None) -> Path:
    """Write weights and config; ``meta`` may hold ``task``, ``training``, ``accuracy``, ``inference``."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(out / WEIGHTS))
    doc = {"format": FORMAT, "task": "sudoku", **(meta or {}), "arch": model.cfg.to_dict()}
    (out / CONFIG).write_text(json.dumps(doc, indent=2) + "\n")
    return out


def read_config(path: str | Path) -> dict[str, Any]:
    cfg_path = Path(path) / CONFIG
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path}: no such file; a model folder holds {CONFIG} and {WEIGHTS}")
    try:
        doc = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({exc})") from exc
    if doc.get("format") != FORMAT or "arch" not in doc:
        raise CheckpointError(f"{cfg_path}: not an {FORMAT} config (missing 'format' or 'arch')")
    try:
        check_inference({} if doc.get("inference") is None else doc["inference"])  # null: no block, as before
    except ValueError as exc:
        raise CheckpointError(f"{cfg_path}: {exc}") from exc
    return doc


def check_inference(block: Any) -> None:
    """Refuse an ``inference`` block that is not an object of known keys: a misspelt key
    (``verify_bugdet``) would otherwise leave its default in force without a word."""
    if not isinstance(block, dict):
        raise ValueError(f"inference is a JSON object of keys, not {type(block).__name__}")
    unknown = sorted(set(block) - set(INFERENCE_KEYS))
    if unknown:
        raise ValueError(f"inference has no key {', '.join(unknown)}; its keys: {', '.join(INFERENCE_KEYS)}")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[EqRNetwork, dict[str, Any]]:
    """Load a model folder; every tensor of the network must be present with the right shape, and finite."""
    doc = read_config(path)
    try:
        model = EqRNetwork(EqRConfig.from_dict(doc["arch"]))
    except (TypeError, ValueError) as exc:  # a hand-edited arch: unknown values, wrong types
        raise CheckpointError(f"{Path(path) / CONFIG}: not a valid architecture ({exc})") from exc
    weights = Path(path) / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights}: no such file")
    try:
        state = load_file(str(weights))
    except SafetensorError as exc:  # e.g. a pickle renamed: refused by the header parser, never unpickled
        raise CheckpointError(f"{weights}: cut short, or not a safetensors file ({exc})") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{weights}: missing tensors {missing}, unexpected tensors {unexpected}")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{weights}: {name} has shape {list(tensor.shape)}, config expects {list(expected[name].shape)}"
            )
    if (bad := first_non_finite(state)) is not None:
        raise CheckpointError(f"{weights}: {bad}; the file is corrupted")
    model.load_state_dict(state)
    return model.to(device).eval(), doc


def first_non_finite(tensors: dict[str, torch.Tensor]) -> str | None:
    """What is wrong with the first tensor holding a NaN or an infinity (in name order), or None.

    A flipped bit in an exponent turns a weight into NaN, inf or a huge number; the first two would
    only show as NaN answers, so loading and converting refuse them, naming the tensor.
    """
    for name in sorted(tensors):
        finite = torch.isfinite(tensors[name])
        if not bool(finite.all()):
            count = int((~finite).sum())
            return f"tensor {name} holds {count} non-finite value{'s' if count > 1 else ''} (NaN or infinity)"
    return None
