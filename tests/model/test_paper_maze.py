"""The paper's released Maze checkpoint (eqr.md §1.2, §2): convert it, serve it, match the official forward.

The file built here has the released layout (attention + 1D RoPE, D=128, 8 heads, 1 layer, a 16-token
puzzle prefix from a [1, 128] buffer, vocab 6, a 30×30 board) with random weights, and only two H and two
L cycles where the release has 3 and 4 (same loops, same tensors; a 916-position step costs seconds on a
CPU). It is saved the way the official ``save_checkpoint`` saves a ``torch.compile``-d run:
``_orig_mod.model.inner.`` names, an EMA shadow of the trainable parameters only, the pickled
``models.eqr.ModelCarry`` whose latents span S_total = 916 positions, optimizer, RNG and dataset
state, and ``config.model_dump()`` whose arch gives **no** board size (``board_height: null``).

The one-step check runs a plain-torch forward of the official module code (``aba94e9`` InnerNetwork,
the code that loads the released checkpoints) on the tensors as the official evaluation takes them
from the file (``ckpt["model"]``, then every trainable parameter from ``ckpt["ema"]["shadow"]``),
and compares it with the converted model's serving step.
"""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eqr.model.checkpoint import load_model
from eqr.model.paper_checkpoint import convert, load_paper_checkpoint
from eqr.model.step import StepBatch
from eqr.model.tasks.registry import task_for
from tests.model.test_paper_checkpoint import fake_training_package

SIDE = 30  # Maze-30x30-unique-1k
CELLS = SIDE * SIDE
P_LEN = 16
S_TOTAL = CELLS + P_LEN  # 916
VOCAB = 6  # PAD, then "# SGo"
COMPILED = "_orig_mod.model.inner."  # ACTLossHead.model (EqRModel).inner (InnerNetwork), under torch.compile
BATCH = 2  # rows of the serving step under test
CARRY_BATCH = 3  # rows of the training carry in the file (768 per rank upstream)
TOL = 1e-5
ROOT = Path(__file__).resolve().parents[2]

# config/arch/eqr.yaml with the overrides of config/train/eqr_maze_unique.yaml as the release trained it
# (but H_cycles 2, L_cycles 2 for speed), keyed as PretrainConfig.model_dump() writes config.arch
ARCH: dict[str, Any] = {
    "name": "eqr@EqRModel",
    "short_name": "EqR",
    "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"},
    "halt_exploration_prob": 0.1,
    "halt_max_steps": 16,
    "H_cycles": 2,  # released: 3
    "L_cycles": 2,  # released: 4
    "H_layers": 0,
    "L_layers": 1,
    "hidden_size": 128,
    "num_heads": 8,
    "expansion": 4,
    "pos_encodings": "rope",
    "board_height": None,
    "board_width": None,
    "forward_dtype": "bfloat16",
    "mlp_t": False,
    "lambda_": 0.95,
    "noise_scale": 0.01,
    "H_init_std": 1.0,
    "L_init_std": 1.0,
    "puzzle_emb_ndim": 128,
    "puzzle_emb_len": 16,
}


# -- the file ------------------------------------------------------------------------------------


def _trunc_normal(gen: torch.Generator, shape: tuple[int, ...], std: float) -> torch.Tensor:
    """Truncated at ±2 compensated std, realised std ``std`` (the official trunc_normal_init_)."""
    comp = std * 1.13685
    return (torch.randn(shape, generator=gen) * comp).clamp(-2 * comp, 2 * comp)


def official_parameters(gen: torch.Generator) -> dict[str, torch.Tensor]:
    """InnerNetwork's trainable parameters at the released Maze shapes, as if trained (q_head non-zero)."""
    d, inner = ARCH["hidden_size"], 512  # SwiGLU width: ceil256(round(4 * 128 * 2 / 3))

    def linear(out_features: int, in_features: int) -> torch.Tensor:
        return _trunc_normal(gen, (out_features, in_features), 1 / math.sqrt(in_features))

    return {
        "embed_tokens.embedding_weight": _trunc_normal(gen, (VOCAB, d), 1 / math.sqrt(d)),
        "lm_head.weight": linear(VOCAB, d),
        "q_head.weight": linear(2, d),
        "q_head.bias": torch.randn(2, generator=gen),
        "L_level.layers.0.self_attn.qkv_proj.weight": linear(3 * d, d),
        "L_level.layers.0.self_attn.o_proj.weight": linear(d, d),
        "L_level.layers.0.mlp.gate_up_proj.weight": linear(2 * inner, d),
        "L_level.layers.0.mlp.down_proj.weight": linear(d, inner),
    }


def write_released_maze(path: Path) -> Path:
    """``save_checkpoint``'s container for a compiled, EMA-tracked Maze run at step 135000.

    ``model`` is ``train_state.model.state_dict()``: the raw (non-EMA) parameters and the persistent
    ``puzzle_emb.weights`` buffer, nothing non-persistent (H_init/L_init, rotary tables, the sparse
    embedding's local cache). ``ema.shadow`` holds the EMA parameters only, under the same names.
    """
    gen = torch.Generator().manual_seed(2605_21488)
    ema = official_parameters(gen)
    raw = {name: t + 0.05 * torch.randn(t.shape, generator=gen) for name, t in ema.items()}
    puzzle = 0.5 * torch.randn(1, ARCH["puzzle_emb_ndim"], generator=gen)  # one identifier (0) in maze data
    order = [  # InnerNetwork's registration order
        "embed_tokens.embedding_weight",
        "puzzle_emb.weights",
        "lm_head.weight",
        "q_head.weight",
        "q_head.bias",
        *(n for n in ema if n.startswith("L_level.")),
    ]
    model = {COMPILED + n: (puzzle if n == "puzzle_emb.weights" else raw[n]) for n in order}
    shadow = {COMPILED + n: t for n, t in ema.items()}
    adam = {
        "state": {
            i: {"step": torch.tensor(135000.0), "exp_avg": torch.zeros_like(t), "exp_avg_sq": torch.zeros_like(t)}
            for i, t in enumerate(raw.values())
        },
        "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.95), "weight_decay": 1.0, "params": list(range(len(raw)))}],
    }
    sparse = {"state": {}, "param_groups": [{"lr": 1e-4, "weight_decay": 1.0, "params": [len(raw)]}]}
    config = {
        "arch": ARCH,
        "dataset": {"name": "Maze-30x30-unique-1k", "data_path": "data/maze-30x30-unique-1k", "evaluators": []},
        "optimizer_kwargs": {},
        "global_batch_size": 768,
        "epochs": 150000,
        "lr": 1e-4,
        "lr_min_ratio": 1.0,
        "lr_warmup_steps": 2000,
        "weight_decay": 1.0,
        "beta1": 0.9,
        "beta2": 0.95,
        "target_q_update_every": 4,
        "checkpoint_path": "checkpoints/eqr_maze_unique",
        "seed": 0,
        "ema": True,
        "ema_rate": 0.999,
        "puzzle_emb_lr": 1e-4,
        "puzzle_emb_weight_decay": 1.0,
    }
    with fake_training_package() as mod:
        shape = (CARRY_BATCH, S_TOTAL, ARCH["hidden_size"])
        carry = mod.ModelCarry(
            inner_carry=mod.LatentCarry(
                z_H=torch.randn(shape, generator=gen).to(torch.bfloat16),
                z_L=torch.randn(shape, generator=gen).to(torch.bfloat16),
            ),
            steps=torch.full((CARRY_BATCH,), 3, dtype=torch.int32),
            halted=torch.zeros(CARRY_BATCH, dtype=torch.bool),
            current_data={
                "inputs": torch.randint(1, 5, (CARRY_BATCH, CELLS), dtype=torch.int32, generator=gen),
                "labels": torch.randint(1, 6, (CARRY_BATCH, CELLS), dtype=torch.int32, generator=gen),
                "puzzle_identifiers": torch.zeros(CARRY_BATCH, dtype=torch.int32),
            },
            global_step=135000,
        )
        checkpoint = {
            "step": 135000,
            "total_steps": 150000,
            "model": model,
            "optimizers": [adam, sparse],
            "optimizer_lrs": [1e-4, 1e-4],
            "carry": carry,
            "rng": {"torch": torch.random.get_rng_state(), "cuda": None},
            "numpy": np.random.RandomState(0).get_state(),
            "python": random.Random(0).getstate(),
            "train_dataset": {"split": "train", "_iters": 135000, "train_state": None},
            "iteration": 27,
            "config": config,
            "ema": {"mu": 0.999, "shadow": shadow},
            "wandb_run_id": "maze135k",
        }
        torch.save(checkpoint, path)
    assert "models" not in sys.modules
    return path


# -- the official forward ------------------------------------------------------------------------
def official_weights(path: Path, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """The tensors the official evaluation runs: ``ckpt["model"]`` loaded, then every trainable
    parameter overwritten from the EMA shadow (buffers are not in the shadow). Read with a plain
    ``torch.load`` next to the training package, as upstream does; not through the converter."""
    with fake_training_package():
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    weights = {name.removeprefix(COMPILED): t for name, t in ckpt["model"].items()}
    if use_ema:
        weights.update({name.removeprefix(COMPILED): t for name, t in ckpt["ema"]["shadow"].items()})
    return weights


def official_rope(positions: int, head_dim: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """RotaryEmbedding(head_dim, seq_len, theta)'s tables [S, hd]: EqRModel passes seq_len = S_total, so
    the prefix sits at positions 0..P_len-1; inverse frequencies are 1/θ^(i/hd), duplicated as [f, f]."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    freqs = torch.outer(torch.arange(positions, dtype=torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def official_step(
    w: dict[str, torch.Tensor], arch: dict[str, Any], z_H: torch.Tensor, z_L: torch.Tensor, tokens: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One call of the official InnerNetwork (aba94e9) in fp32 with the noise off.

    Returns (z_H, z_L, logits [B, S_in, V], q_halt [B]).
    """
    d, heads, p_len = arch["hidden_size"], arch["num_heads"], arch["puzzle_emb_len"]
    hd, lam, eps = d // heads, arch["lambda_"], 1e-5
    b, s = tokens.shape[0], tokens.shape[1] + p_len  # EqRModel bumps seq_len to S_in + puzzle_emb_len

    def linear(x: torch.Tensor, name: str) -> torch.Tensor:  # CastedLinear, no bias
        return F.linear(x, w[name])

    def rms_norm(x: torch.Tensor) -> torch.Tensor:  # over the channels, no weight
        return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps)

    cos, sin = official_rope(s, hd)

    def rope(t: torch.Tensor) -> torch.Tensor:  # [B, S, H, hd]
        half = t.shape[-1] // 2
        rotated = torch.cat((-t[..., half:], t[..., :half]), -1)
        return t * cos.unsqueeze(-2) + rotated * sin.unsqueeze(-2)

    def attention(h: torch.Tensor, pre: str) -> torch.Tensor:
        qkv = linear(h, pre + "self_attn.qkv_proj.weight").view(b, s, 3 * heads, hd)  # q heads, k heads, v heads
        q, k, v = qkv[:, :, :heads], qkv[:, :, heads : 2 * heads], qkv[:, :, 2 * heads :]
        q, k = rope(q), rope(k)
        # the official CPU path (FlashAttention on CUDA): SDPA over [B, H, S, hd], non-causal, scale 1/sqrt(hd)
        y = F.scaled_dot_product_attention(q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3))
        return linear(y.permute(0, 2, 1, 3).reshape(b, s, d), pre + "self_attn.o_proj.weight")

    def swiglu(h: torch.Tensor, pre: str) -> torch.Tensor:
        gate, up = linear(h, pre + "mlp.gate_up_proj.weight").chunk(2, dim=-1)
        return linear(F.silu(gate) * up, pre + "mlp.down_proj.weight")

    def level(hidden: torch.Tensor, injection: torch.Tensor) -> torch.Tensor:  # NoisyReasoningModule, σ = 0
        h = hidden + injection
        for i in range(arch["L_layers"]):  # post-norm ReasoningBlock
            pre = f"L_level.layers.{i}."
            h = rms_norm(h + attention(h, pre))
            h = rms_norm(h + swiglu(h, pre))
        return (1 - lam) * hidden + lam * h

    # _input_embeddings: the puzzle row (identifier 0) zero-padded to P_len tokens, before the cells; all scaled
    puzzle = w["puzzle_emb.weights"][torch.zeros(b, dtype=torch.long)]
    puzzle = F.pad(puzzle, (0, p_len * d - puzzle.shape[-1])).view(b, p_len, d)
    x = math.sqrt(d) * torch.cat((puzzle, w["embed_tokens.embedding_weight"][tokens]), dim=1)
    for _ in range(arch["H_cycles"]):  # deep_recursion: H_cycles latent recursions
        for _ in range(arch["L_cycles"]):
            z_L = level(z_L, z_H + x)
        z_H = level(z_H, z_L)
    logits = linear(z_H[:, p_len:], "lm_head.weight")
    q = z_H[:, 0] @ w["q_head.weight"].T + w["q_head.bias"]
    return z_H, z_L, logits, q[:, 0]


# -- tests ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_released_maze(tmp_path_factory.mktemp("paper") / "eqr.pth")


@pytest.fixture(scope="module")
def converted(released: Path) -> Path:
    return convert(released, released.parent / "maze", trust=True)


def test_board_size_and_prefix_come_from_the_file(released: Path):
    ckpt = load_paper_checkpoint(released, trust=True)
    cfg = ckpt.config
    assert (cfg.seq_len, cfg.puzzle_emb_len, cfg.puzzle_emb_ndim, cfg.seq_total) == (CELLS, P_LEN, 128, S_TOTAL)
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_heads, cfg.mlp_t, cfg.pos_encodings) == (6, 128, 8, False, "rope")
    assert (cfg.L_layers, cfg.H_cycles, cfg.L_cycles, cfg.halt_max_steps) == (1, 2, 2, 16)
    assert ckpt.meta["layout"] == "prefix" and ckpt.meta["compiled_names"] and ckpt.meta["ema_applied"]
    assert any("carry z_H spans 916 positions, S_in 900" in e for e in ckpt.meta["layout_evidence"])
    assert sum(p.numel() for p in ckpt.network.parameters()) == 263_938  # the released Maze model (eqr.md §1.2)


def test_convert_records_task_and_grid(converted: Path):
    doc = json.loads((converted / "config.json").read_text())
    assert doc["task"] == "maze" and doc["grid"] == {"rows": SIDE, "cols": SIDE}
    assert doc["arch"]["seq_len"] == CELLS and doc["arch"]["puzzle_emb_len"] == P_LEN
    assert doc["source"]["step"] == 135000 and doc["source"]["arch"]["board_height"] is None
    task = task_for(doc)
    assert type(task).__name__ == "MazeTask" and task.name == "maze"
    assert task.size == SIDE and task.seq_len == doc["arch"]["seq_len"]
    _, loaded_doc = load_model(converted)
    assert task_for(loaded_doc).seq_len == CELLS


def test_cli_convert_writes_the_same_folder(released: Path, converted: Path, capsys):
    from eqr.server.cli import main

    out = released.parent / "maze-cli"
    assert main(["convert", str(released), str(out), "--trust"]) == 0
    assert "wrote" in capsys.readouterr().out
    cli_net, cli_doc = load_model(out)
    api_net, api_doc = load_model(converted)
    assert cli_doc["task"] == "maze" and cli_doc["grid"] == {"rows": SIDE, "cols": SIDE}
    assert {k: v for k, v in cli_doc.items() if k != "source"} == {k: v for k, v in api_doc.items() if k != "source"}
    got, want = cli_net.state_dict(), api_net.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[n], want[n]) for n in want)


def fresh_inputs(seq_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Maze-like tokens (walls, open, S, G) and one initial latent pair, fp32, from a fixed seed."""
    gen = torch.Generator().manual_seed(7)
    tokens = torch.randint(1, 5, (BATCH, seq_len), generator=gen)
    z_H = _trunc_normal(gen, (BATCH, S_TOTAL, ARCH["hidden_size"]), 1.0)
    z_L = _trunc_normal(gen, (BATCH, S_TOTAL, ARCH["hidden_size"]), 1.0)
    return tokens, z_H, z_L


def serving_step(net: Any, tokens: torch.Tensor, z_H: torch.Tensor, z_L: torch.Tensor) -> Any:
    """One ``EqRNetwork.iterate`` from the given latents, noise off."""
    s_in = tokens.shape[1]
    return net.iterate(
        StepBatch(
            z_H=z_H.clone(),
            z_L=z_L.clone(),
            tokens=tokens,
            seeds=torch.tensor([11, 12]),
            steps=torch.zeros(BATCH, dtype=torch.long),
            noise=torch.zeros(BATCH),
            prev_logits=torch.zeros(BATCH, s_in, VOCAB),
            prev_pred=torch.full((BATCH, s_in), -1),
        )
    )


def max_diffs(out: Any, ref: tuple[torch.Tensor, ...]) -> dict[str, float]:
    ref_H, ref_L, ref_logits, ref_q = ref
    pairs = {
        "logits": (out.logits, ref_logits),
        "z_H": (out.z_H, ref_H),
        "z_L": (out.z_L, ref_L),
        "q_halt": (out.q_halt, ref_q),
    }
    return {name: (a - b).abs().max().item() for name, (a, b) in pairs.items()}


def test_rope_tables_are_the_officials(converted: Path):
    """Same RoPE over all S_total positions, bit for bit: the inverse frequencies are written 1/θ^(i/hd)
    as the official code writes them (θ^(-i/hd) rounds three of them an fp32 ulp apart)."""
    net, _ = load_model(converted)
    cos, sin = official_rope(S_TOTAL, ARCH["hidden_size"] // ARCH["num_heads"])
    assert net.rope_cos.shape == cos.shape == (S_TOTAL, 16)
    assert torch.equal(net.rope_cos, cos) and torch.equal(net.rope_sin, sin)


def test_one_step_matches_the_official_forward(released: Path, converted: Path):
    net, doc = load_model(converted)
    tokens, z_H, z_L = fresh_inputs(task_for(doc).seq_len)
    with torch.no_grad():
        ref = official_step(official_weights(released), ARCH, z_H, z_L, tokens)

    out = serving_step(net, tokens, z_H, z_L)
    exact = max_diffs(out, ref)
    print("max |converted - official| after one step:", exact)
    assert out.logits.shape == (BATCH, CELLS, VOCAB) and out.z_H.shape == (BATCH, S_TOTAL, ARCH["hidden_size"])
    assert all(v <= TOL for v in exact.values()), exact
    assert torch.equal(out.pred, ref[2].argmax(-1))

    # the comparison can tell: the raw (non-EMA) weights, which the official eval does not serve, are far off
    with torch.no_grad():
        raw = official_step(official_weights(released, use_ema=False), ARCH, z_H, z_L, tokens)
    assert (out.logits - raw[2]).abs().max().item() > 1e-2


async def test_the_converted_checkpoint_is_served_over_http(converted: Path):
    """``eqr serve --model <converted>`` with Sudoku beside it: a 30×30 maze goes in as rows, 30 rows come
    back, and /v1/models says what the folder declares (random weights: the answer's quality is not the point)."""
    import httpx

    from eqr.model.bundled import BUNDLED_MODEL
    from eqr.server.api import create_app
    from eqr.server.settings import Settings

    maze = json.loads((ROOT / "evalsets" / "maze" / "maze30-100.jsonl").read_text().splitlines()[0])["puzzle"]
    app = create_app(Settings(model=[BUNDLED_MODEL, converted], slots=2, max_depth=4))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://eqr.test", timeout=60) as client:
            models = {m["name"]: m for m in (await client.get("/v1/models")).json()["models"]}
            assert models[converted.name]["board"] == {"kind": "maze", "rows": 30, "cols": 30, "charset": "# SGo"}
            # each model's own defaults: the bundled Sudoku model votes, a converted paper model keeps the paper's rule
            assert models["sudoku-small"]["defaults"]["aggregate"] == "vote"
            assert models[converted.name]["defaults"]["aggregate"] == "converged"
            r = await client.post("/v1/solve", json={"model": converted.name, "puzzle": maze, "depth": 2})
            body = r.json()
            assert r.status_code == 200 and body["iterations"] == [2] and isinstance(body["valid"], bool)
            assert len(body["answer"]) == 30 and all(len(row) == 30 for row in body["answer"])
