"""Loading the paper's eqr.pth (eqr.md §2): containers, names, EMA, layout rules, safe unpickling, convert."""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import struct
import sys
import types
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from eqr.model import restricted_pickle
from eqr.model.checkpoint import load_model
from eqr.model.config import EqRConfig
from eqr.model.network import EqRNetwork
from eqr.model.paper_checkpoint import (
    PaperCheckpointError,
    canonical_name,
    convert,
    load_paper_checkpoint,
    read_pth,
)
from eqr.model.step import fresh_batch
from eqr.server.cli import main

COMPILED = "_orig_mod.model.inner."
PLAIN = "model.inner."

# the paper's config.arch at tiny sizes (keys as PretrainConfig.model_dump() writes them)
SUDOKU_ARCH: dict[str, Any] = {
    "name": "recursive_reasoning.eqr@EqR",
    "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"},
    "H_cycles": 1,
    "L_cycles": 1,
    "H_layers": 0,
    "L_layers": 1,
    "hidden_size": 32,
    "num_heads": 4,
    "expansion": 4,
    "pos_encodings": "none",
    "board_height": 9,
    "board_width": 9,
    "forward_dtype": "bfloat16",
    "mlp_t": True,
    "lambda_": 0.9,
    "noise_scale": 0.02,
    "H_init_std": 1.0,
    "L_init_std": 1.0,
    "halt_max_steps": 4,
    "halt_exploration_prob": 0.1,
    "puzzle_emb_ndim": 32,
    "puzzle_emb_len": 16,
}
HEAD_ARCH = {**SUDOKU_ARCH, "puzzle_emb_ndim": 0, "puzzle_emb_len": 0}
MAZE_ARCH = {
    **SUDOKU_ARCH,
    "mlp_t": False,
    "pos_encodings": "rope",
    "board_height": 6,
    "board_width": 6,
}


def _our_config(arch: dict[str, Any], vocab: int, seq_len: int) -> EqRConfig:
    return EqRConfig(
        vocab_size=vocab,
        seq_len=seq_len,
        hidden_size=arch["hidden_size"],
        num_heads=arch["num_heads"],
        expansion=arch["expansion"],
        L_layers=arch["L_layers"],
        H_cycles=arch["H_cycles"],
        L_cycles=arch["L_cycles"],
        mlp_t=arch["mlp_t"],
        pos_encodings=arch["pos_encodings"],
        puzzle_emb_ndim=arch["puzzle_emb_ndim"],
        puzzle_emb_len=arch["puzzle_emb_len"],
        lambda_=arch["lambda_"],
        noise_scale=arch["noise_scale"],
        halt_max_steps=arch["halt_max_steps"],
    )


def reference(arch: dict[str, Any], vocab: int = 11, seq_len: int = 81) -> EqRNetwork:
    """A network built directly, with every tensor (q_head and prefix included) non-trivial."""
    torch.manual_seed(0)
    net = EqRNetwork(_our_config(arch, vocab, seq_len))
    with torch.no_grad():
        net.q_head.weight.normal_(0, 0.1)
        net.q_head.bias.normal_()
        if hasattr(net, "puzzle_emb"):
            net.puzzle_emb.weights.normal_()
    return net.eval()


@contextmanager
def fake_training_package() -> Iterator[types.ModuleType]:
    """Register a stand-in ``models.eqr`` so its dataclasses pickle; gone again after saving."""

    @dataclass
    class LatentCarry:
        z_H: torch.Tensor
        z_L: torch.Tensor

    @dataclass
    class ModelCarry:
        inner_carry: Any
        steps: torch.Tensor
        halted: torch.Tensor
        current_data: dict
        global_step: int | None = None

    pkg, mod = types.ModuleType("models"), types.ModuleType("models.eqr")
    for cls in (LatentCarry, ModelCarry):
        cls.__module__, cls.__qualname__ = "models.eqr", cls.__name__
        setattr(mod, cls.__name__, cls)
    pkg.eqr = mod
    saved = {name: sys.modules.get(name) for name in ("models", "models.eqr")}
    sys.modules.update({"models": pkg, "models.eqr": mod})
    try:
        yield mod
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def write_container(
    path: Path,
    net: EqRNetwork,
    arch: dict[str, Any] | None,
    prefix: str = COMPILED,
    trimmed: bool = False,
    edit: Any = None,
) -> Path:
    """Save ``net`` as the paper's save_checkpoint would: raw weights in ``model`` deliberately
    differ from ``ema.shadow`` (which holds ``net``'s values), the buffer lives only in ``model``."""
    state = net.state_dict()
    params = {name for name, _ in net.named_parameters()}
    model = {prefix + n: (t + 1.0 if n in params else t.clone()) for n, t in state.items()}
    model[prefix + "H_init"] = torch.randn(net.cfg.hidden_size)  # never persisted upstream; must be ignored
    shadow = {prefix + n: state[n].clone() for n in params}
    ckpt: dict[str, Any] = {"model": model, "ema": {"mu": 0.999, "shadow": shadow}, "config": {"arch": arch}}
    if edit is not None:
        edit(ckpt)
    if trimmed:
        torch.save(ckpt, path)
        return path
    d, s = net.cfg.hidden_size, net.cfg.seq_total
    with fake_training_package() as mod:
        carry = mod.ModelCarry(
            inner_carry=mod.LatentCarry(torch.randn(2, s, d, dtype=torch.bfloat16), torch.randn(2, s, d)),
            steps=torch.zeros(2, dtype=torch.int32),
            halted=torch.ones(2, dtype=torch.bool),
            current_data={"inputs": torch.zeros(2, net.cfg.seq_len, dtype=torch.int32)},
        )
        ckpt.update(
            step=1234,
            total_steps=5000,
            optimizers=[{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-4, "params": [0]}]}],
            optimizer_lrs=[1e-4],
            carry=carry,
            rng={"torch": torch.get_rng_state(), "cuda": []},
            numpy=np.random.get_state(),
            python=random.getstate(),
            train_dataset=None,
            iteration=7,
            wandb_run_id="abc123",
        )
        torch.save(ckpt, path)
    assert "models" not in sys.modules and "models.eqr" not in sys.modules
    return path


def one_step(net: EqRNetwork) -> Any:
    """One serving iteration with noise off, from fixed seeds and tokens."""
    cfg = net.cfg
    gen = torch.Generator().manual_seed(5)
    tokens = torch.randint(0, cfg.vocab_size, (2, cfg.seq_len), generator=gen)
    return net.iterate(fresh_batch(net, tokens, torch.tensor([3, 4]), noise=0.0))


def assert_same_network(loaded: EqRNetwork, ref: EqRNetwork) -> None:
    got, want = loaded.state_dict(), ref.state_dict()
    assert set(got) == set(want)
    for name in want:
        assert torch.equal(got[name], want[name]), name
    a, b = one_step(loaded), one_step(ref)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.q_halt, b.q_halt) and torch.equal(a.z_H, b.z_H)


# -- names -------------------------------------------------------------------------------------------
def test_canonical_name_strips_compile_segments_then_wrapper():
    assert canonical_name("_orig_mod.model.inner.lm_head.weight") == "lm_head.weight"
    assert canonical_name("model._orig_mod.inner.L_level.layers.0.mlp.down_proj.weight") == (
        "L_level.layers.0.mlp.down_proj.weight"
    )
    assert canonical_name("model.inner.puzzle_emb.weights") == "puzzle_emb.weights"
    assert canonical_name("inner.H_init") == "H_init"
    assert canonical_name("q_head.bias") == "q_head.bias"


# -- layouts -------------------------------------------------------------------------------------
def test_prefix_layout_compiled_full_container_serves_ema(tmp_path):
    ref = reference(SUDOKU_ARCH)
    src = write_container(tmp_path / "eqr.pth", ref, SUDOKU_ARCH)
    ckpt = load_paper_checkpoint(src, trust=True)
    cfg = ckpt.config
    assert (cfg.seq_len, cfg.puzzle_emb_len, cfg.seq_total, cfg.vocab_size) == (81, 16, 97, 11)
    assert cfg.multiple_of == 256 and cfg.lambda_ == 0.9 and cfg.noise_scale == 0.02 and cfg.halt_max_steps == 4
    assert ckpt.network.state_dict()["L_level.layers.0.mlp_t.gate_up_proj.weight"].shape == (1024, 97)
    # EMA wins over the (+1.0) raw weights; the prefix buffer comes from `model`
    assert_same_network(ckpt.network, ref)
    meta = ckpt.meta
    assert meta["layout"] == "prefix" and meta["container"] == "training-checkpoint"
    assert meta["compiled_names"] and meta["ema_applied"] and meta["step"] == 1234
    assert meta["ignored_tensors"] == ["H_init"] and meta["arch"]["puzzle_emb_len"] == 16


def test_head_layout_plain_names_trimmed_file(tmp_path):
    ref = reference(HEAD_ARCH)
    src = write_container(tmp_path / "eqr.pth", ref, HEAD_ARCH, prefix=PLAIN, trimmed=True)
    ckpt = load_paper_checkpoint(src, trust=True)
    assert ckpt.config.puzzle_emb_len == 0 and ckpt.config.seq_total == 81
    assert not hasattr(ckpt.network, "puzzle_emb")
    assert_same_network(ckpt.network, ref)
    assert ckpt.meta["layout"] == "head" and not ckpt.meta["compiled_names"] and ckpt.meta["step"] is None


def test_attention_maze_like_prefix_seq_from_board(tmp_path):
    ref = reference(MAZE_ARCH, vocab=6, seq_len=36)
    src = write_container(tmp_path / "eqr.pth", ref, MAZE_ARCH)
    ckpt = load_paper_checkpoint(src, trust=True)
    cfg = ckpt.config
    assert (cfg.vocab_size, cfg.seq_len, cfg.seq_total, cfg.mlp_t, cfg.pos_encodings) == (6, 36, 52, False, "rope")
    assert_same_network(ckpt.network, ref)
    assert ckpt.meta["layout"] == "prefix"


def test_prefix_length_from_ndim_when_len_missing(tmp_path):
    # rule 1: no puzzle_emb_len but ndim 48 with D 32 -> ceil(48/32) = 2 prefix tokens
    arch = {k: v for k, v in MAZE_ARCH.items() if k != "puzzle_emb_len"} | {"puzzle_emb_ndim": 48}
    ref = reference({**arch, "puzzle_emb_len": 2}, vocab=6, seq_len=36)
    ckpt = load_paper_checkpoint(write_container(tmp_path / "eqr.pth", ref, arch), trust=True)
    assert ckpt.config.puzzle_emb_len == 2 and ckpt.config.puzzle_emb_ndim == 48
    assert_same_network(ckpt.network, ref)


def test_raw_state_dict_needs_arch_and_takes_seq_len(tmp_path):
    arch = {k: v for k, v in MAZE_ARCH.items() if not k.startswith("board_")}
    ref = reference(arch, vocab=6, seq_len=36)
    src = tmp_path / "raw.pth"
    torch.save({PLAIN + n: t for n, t in ref.state_dict().items()}, src)
    with pytest.raises(PaperCheckpointError, match="--arch"):
        load_paper_checkpoint(src, trust=True)
    with pytest.raises(PaperCheckpointError, match="vocab_size 11 given"):
        load_paper_checkpoint(src, trust=True, arch=arch, seq_len=36, vocab_size=11)
    ckpt = load_paper_checkpoint(src, trust=True, arch=arch, seq_len=36)
    assert ckpt.meta["container"] == "state-dict" and not ckpt.meta["ema_applied"]
    assert_same_network(ckpt.network, ref)
    # attention weights do not reveal S_in and a raw state_dict has no carry: refused, never a silent 81
    with pytest.raises(PaperCheckpointError, match=r"cannot tell the board size.*--seq-len"):
        load_paper_checkpoint(src, trust=True, arch=arch)


def test_the_board_size_comes_from_the_training_carry(tmp_path):
    """The released maze layout (attention + RoPE, 16-token prefix) whose config gives no board size: the
    carry's z_H spans S_total = S_in + 16 positions, which gives S_in, as for the 30×30 release (916)."""
    arch = {k: v for k, v in MAZE_ARCH.items() if not k.startswith("board_")}
    ref = reference(arch, vocab=6, seq_len=36)
    ckpt = load_paper_checkpoint(write_container(tmp_path / "eqr.pth", ref, arch), trust=True)
    assert (ckpt.config.seq_len, ckpt.config.seq_total) == (36, 52)
    assert any("carry z_H spans 52 positions" in e for e in ckpt.meta["layout_evidence"])
    assert_same_network(ckpt.network, ref)
    # a board size that contradicts the carry is refused with the evidence
    with pytest.raises(PaperCheckpointError, match="carry z_H spans 52 positions, S_in 49"):
        load_paper_checkpoint(tmp_path / "eqr.pth", trust=True, seq_len=49)
    # trimmed (no carry) and no board size: refused, naming the flag
    trimmed = write_container(tmp_path / "trimmed.pth", ref, arch, trimmed=True)
    with pytest.raises(PaperCheckpointError, match="--seq-len"):
        load_paper_checkpoint(trimmed, trust=True)


def test_buffer_in_ema_shadow_is_ignored(tmp_path):
    ref = reference(SUDOKU_ARCH)

    def stale_buffer_in_ema(ckpt):
        ckpt["ema"]["shadow"][COMPILED + "puzzle_emb.weights"] = torch.full((1, 32), 9.0)

    src = write_container(tmp_path / "eqr.pth", ref, SUDOKU_ARCH, trimmed=True, edit=stale_buffer_in_ema)
    loaded = load_paper_checkpoint(src, trust=True).network
    assert torch.equal(loaded.puzzle_emb.weights, ref.puzzle_emb.weights)


# -- layout disagreement -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("weights_arch", "file_arch", "vocab", "seq", "expect"),
    [
        # config says prefix; no buffer, mixer spans 81
        (HEAD_ARCH, SUDOKU_ARCH, 11, 81, ["puzzle_emb_len=16", "no puzzle_emb.weights", "spans 81 positions"]),
        # buffer and 97-position mixer, config says no prefix
        (SUDOKU_ARCH, HEAD_ARCH, 11, 81, ["puzzle_emb_len=0", "[1, 32] present", "spans 97 positions"]),
        # attention: only config and buffer can tell, and they disagree
        (MAZE_ARCH, {**MAZE_ARCH, "puzzle_emb_len": 0, "puzzle_emb_ndim": 0}, 6, 36, ["[1, 32] present -> prefix"]),
    ],
)
def test_layout_disagreement_fails_loudly(tmp_path, weights_arch, file_arch, vocab, seq, expect):
    src = write_container(tmp_path / "eqr.pth", reference(weights_arch, vocab, seq), file_arch, trimmed=True)
    with pytest.raises(PaperCheckpointError, match="prefix layout evidence disagrees") as info:
        load_paper_checkpoint(src, trust=True)
    for piece in expect:
        assert piece in str(info.value)


def test_mixer_width_disagreeing_with_config_and_buffer_fails(tmp_path):
    # config and buffer agree on a prefix, but the token-mixing MLP spans only 81 positions
    ref = reference(HEAD_ARCH)

    def add_buffer(ckpt):
        ckpt["model"][COMPILED + "puzzle_emb.weights"] = torch.zeros(1, 32)

    src = write_container(tmp_path / "eqr.pth", ref, SUDOKU_ARCH, trimmed=True, edit=add_buffer)
    with pytest.raises(PaperCheckpointError, match=r"spans 81 positions, S_in 81 .* -> P_len 0"):
        load_paper_checkpoint(src, trust=True)


@pytest.mark.parametrize("claim", ["board", "seq_len"])
def test_a_wrong_board_claim_is_called_a_wrong_board_size(tmp_path, claim):
    """The prefix is confirmed twice (config.arch and the buffer) and the token-mixing MLP spans 97
    positions: a board claimed as 10x10 (or --seq-len 100) is what is wrong, and the message says so."""
    ref = reference(SUDOKU_ARCH)
    arch = {**SUDOKU_ARCH, "board_height": 10, "board_width": 10} if claim == "board" else SUDOKU_ARCH
    src = write_container(tmp_path / "eqr.pth", ref, arch, trimmed=True)
    source = "board_height*board_width" if claim == "board" else "given"
    headline = (
        f"wrong board size: S_in 100 ({source}), but L_level.layers.0.mlp_t.gate_up_proj.weight spans 97 "
        "positions, so with the P_len 16 that config.arch and the weights agree on, the board has 81 cells"
    )
    with pytest.raises(PaperCheckpointError, match=re.escape(headline)) as info:
        load_paper_checkpoint(src, trust=True, seq_len=100 if claim == "seq_len" else None)
    assert "prefix layout" not in str(info.value)


# -- every tensor mapped -------------------------------------------------------------------------
def _drop(key):
    def edit(ckpt):
        del ckpt["model"][key]

    return edit


def _drop_ema(key):
    def edit(ckpt):
        del ckpt["ema"]["shadow"][key]

    return edit


def _add_extra(ckpt):
    ckpt["model"][COMPILED + "extra_head.weight"] = torch.zeros(3)


@pytest.mark.parametrize(
    ("edit", "expect"),
    [
        (_drop(COMPILED + "lm_head.weight"), "missing from model: ['lm_head.weight']"),
        (_drop(COMPILED + "puzzle_emb.weights"), "no puzzle_emb.weights"),
        (_drop_ema(COMPILED + "q_head.bias"), "missing from ema.shadow: ['q_head.bias']"),
        (_add_extra, "unknown tensors in model: ['extra_head.weight']"),
    ],
)
def test_unmapped_or_missing_tensors_are_errors(tmp_path, edit, expect):
    src = write_container(tmp_path / "eqr.pth", reference(SUDOKU_ARCH), SUDOKU_ARCH, trimmed=True, edit=edit)
    with pytest.raises(PaperCheckpointError) as info:
        load_paper_checkpoint(src, trust=True)
    assert expect in str(info.value)


def test_shape_mismatch_names_tensor(tmp_path):
    # expansion 16 asks for a 512-wide channel MLP where the weights are 256 wide
    src = write_container(tmp_path / "eqr.pth", reference(HEAD_ARCH), {**HEAD_ARCH, "expansion": 16}, trimmed=True)
    with pytest.raises(PaperCheckpointError) as info:
        load_paper_checkpoint(src, trust=True)
    assert "model L_level.layers.0.mlp.gate_up_proj.weight has shape [512, 32], config expects [1024, 32]" in str(
        info.value
    )


def test_missing_arch_keys_are_listed(tmp_path):
    arch = {k: v for k, v in HEAD_ARCH.items() if k not in ("lambda_", "H_cycles")}
    src = write_container(tmp_path / "eqr.pth", reference(HEAD_ARCH), arch, trimmed=True)
    with pytest.raises(PaperCheckpointError, match=r"config.arch lacks \['H_cycles', 'lambda_'\]"):
        load_paper_checkpoint(src, trust=True)


# -- corrupted files ---------------------------------------------------------------------------------
def _flip_a_byte_in_the_largest_record(path: Path) -> str:
    """Flip the high bits of one byte in the middle of the biggest data record (a weight), in place,
    leaving the zip's CRCs as they were; returns the record's name."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.file_size // 2 + 3] ^= 0x7F  # the top byte of a little-endian fp32: its exponent
    path.write_bytes(bytes(data))
    return info.filename


def test_a_record_with_flipped_bytes_fails_its_crc_at_convert(tmp_path, capsys):
    src = write_container(tmp_path / "eqr.pth", reference(SUDOKU_ARCH), SUDOKU_ARCH, trimmed=True)
    record = _flip_a_byte_in_the_largest_record(src)
    with pytest.raises(PaperCheckpointError, match=f"record {record} fails its zip CRC check: the file is corrupted"):
        convert(src, tmp_path / "out", trust=True)
    assert main(["convert", str(src), str(tmp_path / "out"), "--trust"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"record {record} fails its zip CRC check" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("origin", ["model", "ema.shadow"])
def test_a_non_finite_weight_is_refused_at_convert_naming_the_tensor(tmp_path, origin):
    def poison(ckpt):
        tensors = ckpt["model"] if origin == "model" else ckpt["ema"]["shadow"]
        tensors[COMPILED + "lm_head.weight"][1, 2] = float("inf")

    src = write_container(tmp_path / "eqr.pth", reference(SUDOKU_ARCH), SUDOKU_ARCH, trimmed=True, edit=poison)
    message = f"{origin} tensor lm_head.weight holds 1 non-finite value (NaN or infinity): the file is corrupted"
    with pytest.raises(PaperCheckpointError, match=re.escape(message)):
        convert(src, tmp_path / "out", trust=True)
    assert not (tmp_path / "out").exists()


# -- unpickling safety -------------------------------------------------------------------------
class _RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Evals:
    def __reduce__(self):
        return (eval, ("1 + 1",))


def test_untrusted_load_refuses_before_unpickling(tmp_path):
    marker = tmp_path / "pwned"
    src = tmp_path / "eqr.pth"
    torch.save({"model": {}, "payload": _RunsShell(marker)}, src)
    with pytest.raises(PaperCheckpointError, match="--trust") as info:
        load_paper_checkpoint(src)
    assert "arbitrary code" in str(info.value)
    assert not marker.exists()


def test_trusted_load_still_refuses_code_execution(tmp_path):
    marker = tmp_path / "pwned"
    src = tmp_path / "eqr.pth"
    torch.save({"model": reference(HEAD_ARCH).state_dict(), "payload": _RunsShell(marker)}, src)
    with pytest.raises(PaperCheckpointError, match=r"refusing to unpickle global posix\.system"):
        load_paper_checkpoint(src, trust=True)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [_Evals(), __import__("subprocess").Popen, os.system, getattr])
def test_restricted_unpickler_refuses_unknown_globals(payload):
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        with pytest.raises(restricted_pickle.UnsafePickleError, match="refusing to unpickle global"):
            restricted_pickle.loads(pickle.dumps(payload, protocol=protocol))


def test_restricted_unpickler_keeps_plain_data_and_numpy_state():
    state = np.random.RandomState(3).get_state()
    data = {"np": state, "set": {1, 2}, "bytes": b"\x00\xff", "py": random.Random(1).getstate()}
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        back = restricted_pickle.loads(pickle.dumps(data, protocol=protocol))
        assert back["set"] == {1, 2} and back["bytes"] == b"\x00\xff" and back["py"] == data["py"]
        assert back["np"][0] == "MT19937" and np.array_equal(back["np"][1], state[1])
    # numpy 1.x spelled the array module numpy.core.multiarray
    legacy = pickle.dumps(np.arange(3), protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert np.array_equal(restricted_pickle.loads(legacy), np.arange(3))


def test_training_classes_become_placeholders(tmp_path):
    src = write_container(tmp_path / "eqr.pth", reference(HEAD_ARCH), HEAD_ARCH)
    obj = read_pth(src, trust=True)
    carry = obj["carry"]
    assert isinstance(carry, restricted_pickle.Placeholder) and carry.origin == "models.eqr.ModelCarry"
    assert carry.state["inner_carry"].origin == "models.eqr.LatentCarry"
    assert carry.state["inner_carry"].state["z_H"].dtype == torch.bfloat16
    assert obj["numpy"][0] == "MT19937" and obj["step"] == 1234


def test_plain_torch_load_needs_the_training_package(tmp_path):
    # why the restricted unpickler exists (eqr.md §2.5)
    src = write_container(tmp_path / "eqr.pth", reference(HEAD_ARCH), HEAD_ARCH)
    with pytest.raises(pickle.UnpicklingError, match=r"models\.eqr"):
        torch.load(src, map_location="cpu", weights_only=True)


# -- convert and the CLI ----------------------------------------------------------------------------
def test_convert_writes_a_loadable_model_folder(tmp_path):
    ref = reference(SUDOKU_ARCH)
    src = write_container(tmp_path / "eqr.pth", ref, SUDOKU_ARCH)
    out = convert(src, tmp_path / "out", trust=True)
    model, doc = load_model(out)
    assert_same_network(model, ref)
    assert doc["task"] == "sudoku" and doc["arch"]["puzzle_emb_len"] == 16
    source = doc["source"]
    assert source["file"] == "eqr.pth" and source["layout"] == "prefix" and source["step"] == 1234
    assert source["arch"]["H_init_std"] == 1.0 and source["ema_applied"]
    assert doc["inference"] == {"presets": ["paper"]}  # the paper's Sudoku protocol fits a paper Sudoku model


def test_cli_convert_end_to_end(tmp_path, capsys):
    ref = reference(MAZE_ARCH, vocab=6, seq_len=36)
    src = write_container(tmp_path / "eqr.pth", ref, MAZE_ARCH)
    assert main(["convert", str(src), str(tmp_path / "out"), "--trust"]) == 0
    assert "wrote" in capsys.readouterr().out
    model, doc = load_model(tmp_path / "out")
    assert_same_network(model, ref)
    assert doc["task"] == "maze" and doc["grid"] == {"rows": 6, "cols": 6} and doc["source"]["layout"] == "prefix"
    assert "inference" not in doc  # the paper preset is the Sudoku protocol: a maze folder takes none


@pytest.mark.parametrize(
    ("board", "seq_len", "expect"),
    [
        ((None, None), 36, {"rows": 6, "cols": 6}),  # no board size: the square of S_in, as for the 30x30 release
        ((9, 9), None, {"rows": 9, "cols": 9}),  # config.arch's board, as it says
        # a board eqr serve's maze task cannot take: refused at convert, not at serve
        ((4, 9), None, "eqr serve could not serve the converted folder: a maze model folder must give its square"),
        ((None, None), 40, "a maze of 40 cells is not square"),
        ((6, 6), 40, "board 6x6 has 36 cells, but the model's S_in is 40"),
    ],
)
def test_convert_records_the_maze_grid(tmp_path, board, seq_len, expect):
    arch = {**MAZE_ARCH, "board_height": board[0], "board_width": board[1]}
    cells = seq_len or board[0] * board[1]
    ref = reference(arch, vocab=6, seq_len=cells)
    src = tmp_path / "raw.pth"
    torch.save({PLAIN + n: t for n, t in ref.state_dict().items()}, src)
    if isinstance(expect, str):
        with pytest.raises(PaperCheckpointError, match=expect):
            convert(src, tmp_path / "out", trust=True, arch=arch, seq_len=seq_len)
        assert not (tmp_path / "out").exists()
        return
    _, doc = load_model(convert(src, tmp_path / "out", trust=True, arch=arch, seq_len=seq_len))
    assert doc["task"] == "maze" and doc["grid"] == expect and doc["arch"]["seq_len"] == cells


def test_cli_convert_raw_state_dict_with_arch_file(tmp_path):
    ref = reference(HEAD_ARCH)
    src = tmp_path / "raw.pth"
    torch.save({COMPILED + n: t for n, t in ref.state_dict().items()}, src)
    arch_file = tmp_path / "all_config.json"
    arch_file.write_text(json.dumps({"arch": HEAD_ARCH, "lr": 1e-4}))
    assert main(["convert", str(src), str(tmp_path / "out"), "--trust", "--arch", str(arch_file)]) == 0
    assert_same_network(load_model(tmp_path / "out")[0], ref)


@pytest.mark.parametrize("case", ["untrusted", "missing", "disagreeing"])
def test_cli_convert_errors_are_one_line_exit_2(tmp_path, capsys, case):
    src = write_container(tmp_path / "eqr.pth", reference(HEAD_ARCH), SUDOKU_ARCH, trimmed=True)
    argv = {
        "untrusted": [str(src), str(tmp_path / "out")],
        "missing": [str(tmp_path / "nope.pth"), str(tmp_path / "out"), "--trust"],
        "disagreeing": [str(src), str(tmp_path / "out"), "--trust"],
    }[case]
    assert main(["convert", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("eqr convert: ") and err.count("\n") == 1 and "Traceback" not in err
    assert {"untrusted": "--trust", "missing": "no such file", "disagreeing": "disagrees"}[case] in err
    assert not (tmp_path / "out").exists()
