"""The project's own model folder (model.safetensors + config.json): round trip and clear failures; and
what ``eqr convert --trust`` refuses to load at all (the paper's format itself: test_paper_checkpoint.py)."""

from __future__ import annotations

import io
import json
import re
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from eqr.model.checkpoint import CONFIG, FORMAT, WEIGHTS, CheckpointError, load_model, read_config, save_model
from eqr.model.config import EqRConfig
from eqr.model.network import EqRNetwork
from eqr.model.paper_checkpoint import read_pth
from eqr.server.cli import main

TINY = EqRConfig(hidden_size=16, expansion=2.0, multiple_of=16, L_layers=1, H_cycles=1, L_cycles=1, halt_max_steps=2)


def _saved(tmp_path, cfg: EqRConfig = TINY):
    torch.manual_seed(1)
    net = EqRNetwork(cfg)
    with torch.no_grad():
        net.q_head.weight.normal_()
        if hasattr(net, "puzzle_emb"):
            net.puzzle_emb.weights.normal_()
    return net, save_model(tmp_path / "m", net, meta={"task": "sudoku", "accuracy": {"exact": 0.5}})


def _edit_config(folder, **arch):
    doc = json.loads((folder / CONFIG).read_text())
    doc["arch"].update(arch)
    (folder / CONFIG).write_text(json.dumps(doc))


@pytest.mark.parametrize("cfg", [TINY, EqRConfig(**{**TINY.to_dict(), "puzzle_emb_ndim": 16, "puzzle_emb_len": 2})])
def test_round_trip_keeps_every_tensor_config_and_meta(tmp_path, cfg):
    net, folder = _saved(tmp_path, cfg)
    loaded, doc = load_model(folder)
    assert loaded.cfg == cfg and not loaded.training
    want = net.state_dict()
    assert set(loaded.state_dict()) == set(want)
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, want[name]), name
    assert doc["format"] == FORMAT and doc["accuracy"] == {"exact": 0.5} and doc["arch"] == cfg.to_dict()


def test_missing_folder_or_config(tmp_path):
    with pytest.raises(CheckpointError, match=f"{CONFIG}: no such file"):
        load_model(tmp_path / "absent")


def test_missing_weights(tmp_path):
    _, folder = _saved(tmp_path)
    (folder / WEIGHTS).unlink()
    with pytest.raises(CheckpointError, match=f"{WEIGHTS}: no such file"):
        load_model(folder)


def test_bad_json_and_foreign_json(tmp_path):
    _, folder = _saved(tmp_path)
    (folder / CONFIG).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_config(folder)
    (folder / CONFIG).write_text(json.dumps({"hidden_size": 16}))
    with pytest.raises(CheckpointError, match="not an eqr-serve/1 config"):
        load_model(folder)


def test_shape_mismatch_names_the_tensor_and_both_shapes(tmp_path):
    _, folder = _saved(tmp_path)
    _edit_config(folder, vocab_size=12)
    name = r"(embed_tokens\.embedding_weight|lm_head\.weight)"
    pattern = rf"model\.safetensors: {name} has shape \[11, 16\], config expects \[12, 16\]"
    with pytest.raises(CheckpointError, match=pattern):
        load_model(folder)


def test_missing_and_unexpected_tensors_are_listed(tmp_path):
    _, folder = _saved(tmp_path)
    _edit_config(folder, L_layers=2)
    with pytest.raises(CheckpointError, match=r"missing tensors \['L_level\.layers\.1\.mlp\.down_proj\.weight'"):
        load_model(folder)
    _edit_config(folder, L_layers=1, mlp_t=False, num_heads=4)
    with pytest.raises(CheckpointError, match=r"unexpected tensors \['L_level\.layers\.0\.mlp_t\."):
        load_model(folder)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_weight_is_refused_naming_the_tensor(tmp_path, bad):
    _, folder = _saved(tmp_path)
    tensors = load_file(str(folder / WEIGHTS))
    tensors["lm_head.weight"][2, 3] = bad
    tensors["lm_head.weight"][4, 1] = -bad
    save_file(tensors, str(folder / WEIGHTS))
    message = "lm_head.weight holds 2 non-finite values (NaN or infinity); the file is corrupted"
    with pytest.raises(CheckpointError, match=re.escape(f"{WEIGHTS}: tensor {message}")):
        load_model(folder)


def test_an_invalid_architecture_is_a_checkpoint_error(tmp_path):
    _, folder = _saved(tmp_path)
    _edit_config(folder, pos_encodings="alibi")
    with pytest.raises(CheckpointError, match=r"config\.json: not a valid architecture \(pos_encodings must be"):
        load_model(folder)


def test_a_misspelt_inference_key_is_refused_naming_it(tmp_path, capsys):
    """``verify_bugdet`` would otherwise leave the folder's budget at the server's default unsaid."""
    _, folder = _saved(tmp_path)
    doc = json.loads((folder / CONFIG).read_text())
    (folder / CONFIG).write_text(json.dumps({**doc, "inference": {"window": 2, "verify_bugdet": 64}}))
    with pytest.raises(CheckpointError, match=r"config\.json: inference has no key verify_bugdet; its keys: depth"):
        load_model(folder)
    assert main(["solve", "--model", str(folder), "." * 81]) == 2  # one line, as for any folder it cannot load
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "verify_bugdet" in err[0], err
    (folder / CONFIG).write_text(json.dumps({**doc, "inference": ["window", 2]}))
    with pytest.raises(CheckpointError, match="inference is a JSON object of keys, not list"):
        read_config(folder)
    (folder / CONFIG).write_text(json.dumps({**doc, "inference": None}))  # null: no block, the server's defaults
    assert read_config(folder)["inference"] is None


class _RunsCode:
    """A pickle payload that would leave a marker file if it were ever unpickled."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_is_never_loaded_only_safetensors(tmp_path):
    # only `eqr convert --trust` unpickles (with a restricted unpickler, tests/model/test_paper_checkpoint.py);
    # serving reads model.safetensors, so a pickle there, or beside it, is refused without running
    _, folder = _saved(tmp_path)
    marker = tmp_path / "pwned"
    (folder / WEIGHTS).unlink()
    for name in ("pytorch_model.bin", "model.pt", "eqr.pth"):
        torch.save({"payload": _RunsCode(marker)}, folder / name)
    with pytest.raises(CheckpointError, match=f"{WEIGHTS}: no such file"):
        load_model(folder)
    torch.save({"payload": _RunsCode(marker)}, folder / WEIGHTS)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_model(folder)
    assert not marker.exists()


# an op that leaves a marker file: what TorchScript code in an archive calls to show that it ran
_MARKER_OPS = torch.library.Library("eqr_checkpoint_test", "DEF")
_MARKER_OPS.define("touch(Tensor x, str path) -> Tensor")
_MARKER_OPS.impl("touch", lambda x, path: (Path(path).touch(), x)[1], "CPU")


class _TouchesOnLoad(torch.nn.Module):
    """Scripted, its ``__setstate__`` is TorchScript code that ``torch.jit.load`` runs while loading."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.seen = torch.zeros(1)

    def forward(self) -> int:
        return 0

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        self.seen = torch.ops.eqr_checkpoint_test.touch(torch.zeros(1), self.marker)


def _with_extra_record(src: Path) -> None:
    """A torch.save zip plus one record torch.save never writes."""
    torch.save({"model": {}}, src)
    with zipfile.ZipFile(src, "a") as archive:
        archive.writestr(archive.namelist()[0].split("/")[0] + "/extra.pkl", b"\x80\x04N.")


def _tar(src: Path) -> None:
    """The pre-1.0 tar format, which torch.load still tries before reading a plain pickle."""
    data = b"not what torch.load expects"
    with tarfile.open(src, "w") as tar:
        info = tarfile.TarInfo("pickle")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize(
    "case, expect",
    [
        ("torchscript", "a TorchScript archive"),
        ("extra record", "eqr/extra.pkl"),
        ("tar", "neither a torch.save zip nor a pickle"),
        ("not a pickle", "neither a torch.save zip nor a pickle"),
    ],
)
def test_convert_refuses_what_is_not_a_plain_pickled_checkpoint(tmp_path, capsys, case, expect):
    # torch.load hands a TorchScript zip to torch.jit.load, which runs the archive's code, bypassing the
    # restricted unpickler; so anything but what torch.save writes is refused before it is opened by torch
    marker, src, out = tmp_path / "pwned", tmp_path / "eqr.pth", tmp_path / "out"
    if case == "torchscript":
        torch.jit.save(torch.jit.script(_TouchesOnLoad(str(marker))), src)
    elif case == "extra record":
        _with_extra_record(src)
    elif case == "tar":
        _tar(src)
    else:
        src.write_bytes(b"#!/bin/sh\necho hi\n")
    assert main(["convert", str(src), str(out), "--trust"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("eqr convert: ") and err.count("\n") == 1 and "Traceback" not in err
    assert expect in err and not out.exists() and not marker.exists()
    if case == "torchscript":
        torch.jit.load(src)  # the archive is live: loaded as TorchScript, its code leaves the marker
        assert marker.exists()


@pytest.mark.parametrize("zipped", [True, False])
def test_convert_reads_both_torch_save_formats(tmp_path, zipped):
    src = tmp_path / "eqr.pth"
    torch.save({"model": {"w": torch.ones(2)}, "step": 3}, src, _use_new_zipfile_serialization=zipped)
    loaded = read_pth(src, trust=True)
    assert loaded["step"] == 3 and torch.equal(loaded["model"]["w"], torch.ones(2))
