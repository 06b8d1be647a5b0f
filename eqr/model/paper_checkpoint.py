"""Load the paper's released ``eqr.pth`` and convert it to the project's own format (eqr.md §2).

The released file is a pickled training checkpoint, not a state_dict: the weights sit under
``model`` (raw, possibly with ``_orig_mod.`` segments from ``torch.compile``) and ``ema.shadow``
(the weights the paper evaluates), the architecture under ``config.arch``, next to optimizer and
RNG state we do not need. Everything that decides how the network computes is checked here rather
than trusted: every tensor must map to a parameter of :class:`EqRNetwork` with the right shape, and
the puzzle-prefix layout is confirmed by three independent pieces of evidence (§2.4), because a
prefix model run without its prefix loads silently and just gives worse answers.

Why one file of ~500 lines: it is one foreign format's whole story (refusing what is not a plain
pickle, restricted unpickling, key mapping, layout evidence, config translation); split, the
checks would be separated from the evidence they weigh against each other.
"""

from __future__ import annotations

import json
import math
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch

from eqr.model import restricted_pickle
from eqr.model.checkpoint import CheckpointError, first_non_finite, save_model
from eqr.model.config import EqRConfig
from eqr.model.network import EqRNetwork
from eqr.model.tasks.registry import task_for

SUDOKU_CELLS = 81  # S_in of a model with Sudoku's 11-token vocabulary, when nothing else gives the board size
SUDOKU_VOCAB = 11
MAZE_VOCAB = 6  # PAD and "# SGo" (eqr.md §3)
BUFFER = "puzzle_emb.weights"
# names that exist in the paper's modules but carry nothing we need (eqr.md §2.2)
IGNORED_NAMES = frozenset({"H_init", "L_init", "puzzle_emb.local_weights", "puzzle_emb.local_ids"})
IGNORED_PREFIXES = ("rotary_emb.",)
# arch keys that change what the network computes and cannot be read off the weights
REQUIRED_ARCH = ("hidden_size", "expansion", "L_layers", "H_cycles", "L_cycles", "mlp_t", "lambda_", "noise_scale")

# every record torch.save (1.6 to 2.x) writes into its zip, under one root folder named after the file
TORCH_SAVE_RECORD = re.compile(
    r"[^/]+/(data\.pkl|data/\d+|version|byteorder|\.format_version|\.storage_alignment|\.data/serialization_id)"
)
TRUST_HINT = (
    "refusing to unpickle {path}: a .pth file is a Python pickle, and loading one can run arbitrary code. "
    "If you trust where this file came from, pass --trust (trust=True); loading then uses a restricted "
    "unpickler that only rebuilds tensors and plain data"
)


class PaperCheckpointError(CheckpointError):
    """The paper checkpoint cannot be loaded as an EqR network; the message says what disagrees."""


@dataclass(frozen=True)
class Layout:
    """Where the network reads its prefix from; ``evidence`` is what the three §2.4 rules saw."""

    prefix: bool
    puzzle_emb_len: int
    seq_len: int  # S_in: board cells, without the prefix
    evidence: tuple[str, ...]

    @property
    def name(self) -> str:
        return "prefix" if self.prefix else "head"


@dataclass
class PaperCheckpoint:
    network: EqRNetwork
    config: EqRConfig
    meta: dict[str, Any] = field(default_factory=dict)  # what convert() records as "source"


# -- reading the file ------------------------------------------------------------------------------
def check_plain_pickle(src: Path, file: IO[bytes]) -> None:
    """Refuse ``file`` unless it is what ``torch.save`` writes; only its zip directory or first bytes are read.

    ``torch.load`` does more than unpickle: a zip holding ``constants.pkl`` goes to ``torch.jit.load``,
    which runs the TorchScript code inside (``__setstate__``) without ever using our pickle module,
    and a tar goes to a legacy loader. So only the two layouts ``torch.save`` writes pass: a zip of
    the records it writes, or a bare pickle stream (its format before torch 1.6), which starts with a
    pickle's PROTO opcode where a tar starts with a file name.
    """
    head = file.read(4)
    try:
        if head == b"PK\x03\x04":  # the test torch.load uses to take its zip path
            archive = zipfile.ZipFile(file)
            _check_torch_save_zip(src, archive.namelist())
            _check_crcs(src, archive)
        elif head[:1] != pickle.PROTO:  # a tar (torch's pre-1.0 format) or anything else
            raise PaperCheckpointError(f"{src}: not a pickled torch checkpoint (neither a torch.save zip nor a pickle)")
    except zipfile.BadZipFile as exc:
        raise PaperCheckpointError(f"{src}: not a pickled torch checkpoint (a broken zip: {exc})") from exc
    finally:
        file.seek(0)


def _check_torch_save_zip(src: Path, names: list[str]) -> None:
    if any(name.endswith("/constants.pkl") or "/code/" in name for name in names):
        raise PaperCheckpointError(
            f"{src}: a TorchScript archive, not a pickled checkpoint; loading it would run the code it holds, "
            "so eqr convert reads only files written by torch.save"
        )
    odd = [name for name in names if not TORCH_SAVE_RECORD.fullmatch(name)]
    roots = {name.split("/", 1)[0] for name in names}
    if odd or len(roots) != 1 or f"{next(iter(roots))}/data.pkl" not in names:
        raise PaperCheckpointError(
            f"{src}: not a pickled torch checkpoint (a zip whose records are not those torch.save writes: "
            f"{', '.join(odd or names)})"
        )


def _check_crcs(src: Path, archive: zipfile.ZipFile) -> None:
    """Every record against the CRC its zip entry carries: torch's own reader never checks them, so a
    flipped byte inside a weight record would load as a wrong (often enormous) weight."""
    bad = archive.testzip()
    if bad is not None:
        raise PaperCheckpointError(
            f"{src}: record {bad} fails its zip CRC check: the file is corrupted (download or copy it again)"
        )


def read_pth(path: str | Path, trust: bool = False) -> Any:
    """Unpickle ``path`` with the restricted pickle module; without ``trust`` nothing is unpickled.

    The file is opened once, checked by :func:`check_plain_pickle` and loaded from the same handle, so
    it cannot be swapped between the check and the load.
    """
    src = Path(path)
    if not src.is_file():
        raise PaperCheckpointError(f"{src}: no such file")
    if not trust:
        raise PaperCheckpointError(TRUST_HINT.format(path=src))
    with src.open("rb") as file:
        check_plain_pickle(src, file)
        try:
            return torch.load(file, map_location="cpu", weights_only=False, pickle_module=restricted_pickle)
        except restricted_pickle.UnsafePickleError as exc:
            raise PaperCheckpointError(f"{src}: {exc}") from exc
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
            raise PaperCheckpointError(f"{src}: cannot read as a torch checkpoint ({exc})") from exc


def read_arch_file(path: str | Path) -> dict[str, Any]:
    """Read a paper arch config (JSON or YAML; either the arch dict itself or a config holding ``arch``).

    A raw state_dict carries no config, so its architecture has to come from such a file
    (the paper's ``all_config.yaml`` works as is).
    """
    src = Path(path)
    if not src.is_file():
        raise PaperCheckpointError(f"{src}: no such file")
    text = src.read_text()
    try:
        if src.suffix in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(text)
        else:
            doc = json.loads(text)
    except Exception as exc:  # yaml and json raise unrelated types; both mean "not a config"
        raise PaperCheckpointError(f"{src}: cannot parse ({exc})") from exc
    if isinstance(doc, Mapping) and isinstance(doc.get("arch"), Mapping):
        doc = doc["arch"]
    if not isinstance(doc, Mapping):
        raise PaperCheckpointError(f"{src}: expected a mapping of arch settings")
    return dict(doc)


# -- names -------------------------------------------------------------------------------------------
def canonical_name(name: str) -> str:
    """Drop every ``_orig_mod`` segment (torch.compile), then the ``model.inner.`` wrapper path."""
    name = ".".join(part for part in name.split(".") if part != "_orig_mod")
    for wrapper in ("model.inner.", "inner."):
        if name.startswith(wrapper):
            return name[len(wrapper) :]
    return name


def is_ignored(name: str) -> bool:
    """Non-persistent or unused in EqR: H_init/L_init, rotary tables, sparse-embedding scratch."""
    return name in IGNORED_NAMES or name.startswith(IGNORED_PREFIXES)


def canonical_state(raw: Mapping[str, Any], what: str) -> tuple[dict[str, torch.Tensor], list[str], bool]:
    """Canonical name → fp32 tensor, plus the ignored names and whether compiled names were seen."""
    state: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    compiled = False
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise PaperCheckpointError(f"{what}: entry {key!r} is not a named tensor")
        compiled |= "_orig_mod" in key.split(".")
        name = canonical_name(key)
        if is_ignored(name):
            ignored.append(name)
        elif name in state:
            raise PaperCheckpointError(f"{what}: two entries map to {name!r} (one is {key!r})")
        else:
            state[name] = value.detach().to(torch.float32)
    return state, sorted(ignored), compiled


def split_container(obj: Any) -> tuple[str, Mapping[str, Any], Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """(kind, model state, EMA shadow or None, config.arch or None) for a training checkpoint or a state_dict."""
    if not isinstance(obj, Mapping):
        raise PaperCheckpointError(f"expected a dict, found {type(obj).__name__}")
    if isinstance(obj.get("model"), Mapping):
        ema = obj.get("ema")
        shadow = None
        if ema is not None:
            if not (isinstance(ema, Mapping) and isinstance(ema.get("shadow"), Mapping)):
                raise PaperCheckpointError("'ema' entry has no 'shadow' dict of tensors")
            shadow = ema["shadow"]
        config = obj.get("config")
        arch = config.get("arch") if isinstance(config, Mapping) else None
        if arch is not None and not isinstance(arch, Mapping):
            raise PaperCheckpointError("config.arch is not a mapping")
        return "training-checkpoint", obj["model"], shadow, arch
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return "state-dict", obj, None, None
    keys = sorted(str(k) for k in obj)[:12]
    raise PaperCheckpointError(f"neither a training checkpoint (no 'model' dict) nor a state_dict; keys {keys}")


# -- architecture --------------------------------------------------------------------------------
def _num_layers(state: Mapping[str, torch.Tensor]) -> int:
    ids = {int(n.split(".")[2]) for n in state if n.startswith("L_level.layers.") and n.split(".")[2].isdigit()}
    return max(ids) + 1 if ids else 0


def carry_positions(obj: Any) -> int | None:
    """S_total as a full training checkpoint's carry holds it (``carry.inner_carry.z_H``: [B, S_total, D]),
    or None when the file has no carry (a trimmed checkpoint, a raw state_dict)."""

    def field(node: Any, name: str) -> Any:
        state = node.state if isinstance(node, restricted_pickle.Placeholder) else node
        return state.get(name) if isinstance(state, Mapping) else getattr(state, name, None)

    z_H = field(field(obj.get("carry") if isinstance(obj, Mapping) else None, "inner_carry"), "z_H")
    return int(z_H.shape[1]) if isinstance(z_H, torch.Tensor) and z_H.dim() == 3 else None


def board_cells(
    arch: Mapping[str, Any], state: Mapping[str, torch.Tensor], p_len: int, seq_len: int | None, s_total: int | None
) -> tuple[int, str]:
    """S_in and where it came from: the caller, config.arch's board size, the carry, Sudoku's vocabulary.

    Never a silent default: a file that tells none of these is refused, naming ``--seq-len``.
    """
    if seq_len is not None:
        return int(seq_len), "given"
    if arch.get("board_height") and arch.get("board_width"):
        return int(arch["board_height"]) * int(arch["board_width"]), "board_height*board_width"
    if s_total is not None:
        return s_total - p_len, f"carry z_H spans {s_total} positions minus P_len {p_len}"
    if int(state["embed_tokens.embedding_weight"].shape[0]) == SUDOKU_VOCAB:
        return SUDOKU_CELLS, "Sudoku's 11-token vocabulary: 9x9"
    raise PaperCheckpointError(
        "cannot tell the board size: config.arch has no board_height/board_width, the file has no training "
        "carry and its vocabulary is not Sudoku's; pass --seq-len (the board's cells, without the prefix)"
    )


def detect_layout(
    arch: Mapping[str, Any],
    state: Mapping[str, torch.Tensor],
    seq_len: int | None = None,
    s_total: int | None = None,
) -> Layout:
    """Apply all three prefix rules of eqr.md §2.4 and insist that they agree.

    1. config: ``puzzle_emb_len`` (or ceil(ndim/D) when only ``puzzle_emb_ndim`` is set);
    2. the ``puzzle_emb.weights`` buffer exists;
    3. mlp_t only: the token-mixing MLP spans S_total positions, so P_len = S_total − S_in.

    ``s_total`` is the carry's sequence length (:func:`carry_positions`): it gives S_in when nothing
    else does, and must agree with S_in + P_len when something else does.
    """
    hidden = int(arch.get("hidden_size") or state["embed_tokens.embedding_weight"].shape[1])
    ndim = int(arch.get("puzzle_emb_ndim") or 0)
    p_cfg = int(arch.get("puzzle_emb_len") or 0)
    if p_cfg == 0 and ndim > 0:
        p_cfg = math.ceil(ndim / hidden)
    evidence = [
        f"config.arch puzzle_emb_len={arch.get('puzzle_emb_len')!r} puzzle_emb_ndim={arch.get('puzzle_emb_ndim')!r}"
        f" -> P_len {p_cfg}"
    ]
    has_buffer = BUFFER in state
    evidence.append(
        f"{BUFFER} {list(state[BUFFER].shape)} present -> prefix" if has_buffer else f"no {BUFFER} -> no prefix"
    )
    prefix_agrees = (p_cfg > 0) == has_buffer

    s_in, s_from = board_cells(arch, state, p_cfg, seq_len, s_total)
    spans: dict[str, int] = {}  # what spans S_total positions: the carry, the token-mixing MLP
    if s_total is not None:
        evidence.append(f"carry z_H spans {s_total} positions, S_in {s_in} ({s_from}) + P_len {p_cfg}")
        spans["the carry z_H"] = s_total
    mixer = "L_level.layers.0.mlp_t.gate_up_proj.weight"
    if mixer in state:
        width = int(state[mixer].shape[1])
        evidence.append(f"{mixer} spans {width} positions, S_in {s_in} ({s_from}) -> P_len {width - s_in}")
        spans[mixer] = width
    if prefix_agrees and all(n == s_in + p_cfg for n in spans.values()):
        return Layout(prefix=p_cfg > 0, puzzle_emb_len=p_cfg, seq_len=s_in, evidence=tuple(evidence))
    implied = {n - p_cfg for n in spans.values()}
    if prefix_agrees and len(implied) == 1 and not s_from.startswith("carry"):
        # config and buffer agree on the prefix and the spans agree with each other: only the board is off
        spanned = " and ".join(f"{what} spans {n} positions" for what, n in spans.items())
        raise PaperCheckpointError(
            f"wrong board size: S_in {s_in} ({s_from}), but {spanned}, so with the P_len {p_cfg} that "
            f"config.arch and the weights agree on, the board has {implied.pop()} cells; evidence: "
            + "; ".join(evidence)
        )
    raise PaperCheckpointError("prefix layout evidence disagrees: " + "; ".join(evidence))


def arch_to_config(
    arch: Mapping[str, Any], state: Mapping[str, torch.Tensor], layout: Layout, vocab_size: int | None = None
) -> EqRConfig:
    """Map the paper's ``config.arch`` onto :class:`EqRConfig`; vocab comes from the embedding rows."""
    missing = [k for k in REQUIRED_ARCH if k not in arch]
    if not arch.get("mlp_t") and "num_heads" not in arch:
        missing.append("num_heads")
    if not arch.get("mlp_t") and "pos_encodings" not in arch:
        missing.append("pos_encodings")
    if missing:
        raise PaperCheckpointError(f"config.arch lacks {missing}")
    rows = int(state["embed_tokens.embedding_weight"].shape[0])
    if vocab_size is not None and vocab_size != rows:
        raise PaperCheckpointError(f"vocab_size {vocab_size} given, but embed_tokens has {rows} rows")
    mlp_t = bool(arch["mlp_t"])
    pos = str(arch.get("pos_encodings", "none"))
    if pos not in ("rope", "none"):
        if not mlp_t:
            raise PaperCheckpointError(f"pos_encodings {pos!r} is not supported (eqr-serve implements rope and none)")
        pos = "none"  # with mlp_t there is no attention, so the positional scheme has no effect (§1.3)
    h_std = float(arch.get("H_init_std", 1.0))
    l_std = float(arch.get("L_init_std", h_std))
    if l_std != h_std:
        raise PaperCheckpointError(f"H_init_std {h_std} != L_init_std {l_std}; eqr-serve draws both with one std")
    try:
        return EqRConfig(
            vocab_size=rows,
            seq_len=layout.seq_len,
            hidden_size=int(arch["hidden_size"]),
            num_heads=int(arch.get("num_heads", 8)),
            expansion=float(arch["expansion"]),
            multiple_of=256,  # the paper's SwiGLU rounding; the weight shapes confirm it below
            L_layers=int(arch["L_layers"]),
            H_cycles=int(arch["H_cycles"]),
            L_cycles=int(arch["L_cycles"]),
            mlp_t=mlp_t,
            pos_encodings=pos,
            puzzle_emb_ndim=int(arch.get("puzzle_emb_ndim") or 0) if layout.prefix else 0,
            puzzle_emb_len=layout.puzzle_emb_len,
            lambda_=float(arch["lambda_"]),
            noise_scale=float(arch["noise_scale"]),
            init_std=h_std,
            rms_norm_eps=float(arch.get("rms_norm_eps", 1e-5)),
            rope_theta=float(arch.get("rope_theta", 10000.0)),
            halt_max_steps=int(arch.get("halt_max_steps", 16)),
        )
    except ValueError as exc:
        raise PaperCheckpointError(f"config.arch is not a valid EqR architecture: {exc}") from exc


# -- weights ------------------------------------------------------------------------------------
def merge_weights(
    net: EqRNetwork, state: Mapping[str, torch.Tensor], shadow: Mapping[str, torch.Tensor] | None
) -> dict[str, torch.Tensor]:
    """Start from ``model``, overwrite every trainable parameter with the EMA shadow (EMA wins).

    Buffers (the puzzle prefix) are not tracked by the EMA and always come from ``model``. Any name
    that does not map, is missing, or has the wrong shape is an error listing all such names.
    """
    expected = net.state_dict()
    params = {name for name, _ in net.named_parameters()}
    problems = []
    if missing := sorted(set(expected) - set(state)):
        problems.append(f"missing from model: {missing}")
    if unknown := sorted(set(state) - set(expected)):
        problems.append(f"unknown tensors in model: {unknown}")
    merged = dict(state)
    if shadow is not None:
        if missing_ema := sorted(params - set(shadow)):
            problems.append(f"missing from ema.shadow: {missing_ema}")
        if unknown_ema := sorted(set(shadow) - set(expected)):
            problems.append(f"unknown tensors in ema.shadow: {unknown_ema}")
        merged.update({name: shadow[name] for name in params & set(shadow)})
    for origin, tensors in (("model", state), ("ema.shadow", shadow or {})):
        for name, tensor in sorted(tensors.items()):
            if name in expected and tensor.shape != expected[name].shape:
                problems.append(
                    f"{origin} {name} has shape {list(tensor.shape)}, config expects {list(expected[name].shape)}"
                )
    if problems:
        raise PaperCheckpointError("tensors do not match the architecture (canonical names): " + "; ".join(problems))
    for origin, tensors in (("model", state), ("ema.shadow", shadow or {})):
        if (bad := first_non_finite(dict(tensors))) is not None:
            raise PaperCheckpointError(f"{origin} {bad}: the file is corrupted")
    return merged


def _jsonable(value: Any) -> Any:
    """config.arch is plain data in practice; anything else is recorded by its repr."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return repr(value)


def _task(cfg: EqRConfig) -> str:
    if cfg.vocab_size == SUDOKU_VOCAB and cfg.seq_len == SUDOKU_CELLS:
        return "sudoku"
    return "maze" if cfg.vocab_size == MAZE_VOCAB else "unknown"


def task_meta(cfg: EqRConfig, arch: Mapping[str, Any]) -> dict[str, Any]:
    """What a model folder says about its task: ``task``, and for a maze its ``grid`` (rows, cols).

    The grid is config.arch's board size when it gives one (it must cover S_in), else the square
    whose side is sqrt(S_in): the released Maze checkpoint sets no board size and its S_in (900,
    from the training carry) is a 30x30 grid. A maze whose shape neither tells is refused, since a
    maze folder without its grid cannot be served.
    """
    task = _task(cfg)
    if task != "maze":
        return {"task": task}
    height, width = arch.get("board_height"), arch.get("board_width")
    if height and width:
        rows, cols = int(height), int(width)
        if rows * cols != cfg.seq_len:
            raise PaperCheckpointError(
                f"config.arch's board {rows}x{cols} has {rows * cols} cells, but the model's S_in is {cfg.seq_len}"
            )
    else:
        rows = cols = math.isqrt(cfg.seq_len)
        if rows * rows != cfg.seq_len:
            raise PaperCheckpointError(
                f"a maze of {cfg.seq_len} cells is not square and config.arch gives no board_height/board_width, "
                "so its grid is unknown"
            )
    return {"task": "maze", "grid": {"rows": rows, "cols": cols}}


def load_paper_checkpoint(
    path: str | Path,
    trust: bool = False,
    *,
    arch: Mapping[str, Any] | None = None,
    seq_len: int | None = None,
    vocab_size: int | None = None,
) -> PaperCheckpoint:
    """Load ``eqr.pth`` (training checkpoint, trimmed or full, or raw state_dict) as an EqRNetwork.

    ``arch`` supplies the paper's ``config.arch`` for a file that has none (a raw state_dict);
    ``seq_len`` is S_in when neither ``board_height``·``board_width``, the training carry nor a
    Sudoku vocabulary gives it.
    """
    src = Path(path)
    obj = read_pth(src, trust)
    try:
        kind, raw_model, raw_shadow, file_arch = split_container(obj)
    except PaperCheckpointError as exc:
        raise PaperCheckpointError(f"{src}: {exc}") from exc
    if file_arch is not None and arch is not None:
        raise PaperCheckpointError(f"{src}: the file carries config.arch; an explicit arch is only for raw state_dicts")
    arch = file_arch if file_arch is not None else arch
    if arch is None:
        raise PaperCheckpointError(
            f"{src}: a raw state_dict has no config.arch; pass the paper's arch config (--arch all_config.yaml)"
        )
    state, ignored, compiled = canonical_state(raw_model, "model")
    shadow, ignored_ema, compiled_ema = (None, [], False)
    if raw_shadow is not None:
        shadow, ignored_ema, compiled_ema = canonical_state(raw_shadow, "ema.shadow")
    try:
        if "embed_tokens.embedding_weight" not in state:
            raise PaperCheckpointError("missing from model: ['embed_tokens.embedding_weight']")
        layout = detect_layout(arch, state, seq_len, carry_positions(obj))
        if "L_layers" not in arch:
            arch = {**arch, "L_layers": _num_layers(state)}
        if "hidden_size" not in arch:
            arch = {**arch, "hidden_size": int(state["embed_tokens.embedding_weight"].shape[1])}
        cfg = arch_to_config(arch, state, layout, vocab_size)
        net = EqRNetwork(cfg)
        net.load_state_dict(merge_weights(net, state, shadow))
    except PaperCheckpointError as exc:
        raise PaperCheckpointError(f"{src}: {exc}") from exc
    step = obj.get("step") if kind == "training-checkpoint" else None
    meta = {
        "file": src.name,
        "format": "paper eqr.pth",
        "container": kind,
        "layout": layout.name,
        "layout_evidence": list(layout.evidence),
        "compiled_names": compiled or compiled_ema,
        "ema_applied": shadow is not None,
        "step": _jsonable(step),
        "ignored_tensors": sorted(set(ignored) | set(ignored_ema)),
        "arch": _jsonable(arch),
    }
    return PaperCheckpoint(network=net.eval(), config=cfg, meta=meta)


def convert(
    src: str | Path,
    out_dir: str | Path,
    trust: bool = False,
    *,
    arch: Mapping[str, Any] | None = None,
    seq_len: int | None = None,
    vocab_size: int | None = None,
) -> Path:
    """Write ``src`` (the paper's ``eqr.pth``) as a model folder that :func:`load_model` reads."""
    ckpt = load_paper_checkpoint(src, trust, arch=arch, seq_len=seq_len, vocab_size=vocab_size)
    try:
        task = task_meta(ckpt.config, ckpt.meta["arch"])
        task_for(task)  # a folder eqr serve would refuse is refused now, before anything is written
    except PaperCheckpointError as exc:
        raise PaperCheckpointError(f"{src}: {exc}") from exc
    except ValueError as exc:  # the task registry's refusal
        raise PaperCheckpointError(f"{src}: eqr serve could not serve the converted folder: {exc}") from exc
    # the paper's Sudoku protocol (the ``paper`` preset: noise 0.5, learned halting) is what such a model was
    # trained and evaluated with; other models take no preset unless their folder lists it
    inference = {"inference": {"presets": ["paper"]}} if task["task"] == "sudoku" else {}
    return save_model(out_dir, ckpt.network, meta={**task, **inference, "source": ckpt.meta})
