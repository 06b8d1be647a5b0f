"""The whole iteration: reference path unchanged, kernels equal to it, the CPU fast step, the graph step's fallback."""

import dataclasses
import logging
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from eqr.kernels import dispatch, rng
from eqr.model.config import EqRConfig
from eqr.model.flops import iteration_flops
from eqr.model.network import EqRNetwork
from eqr.model.step import StepBatch, StepOutput
from eqr.runtime.cpu_step import CpuStep
from eqr.runtime.graph_step import GraphStep, buckets_for
from eqr.runtime.step import make_step

MLP_T = EqRConfig(
    vocab_size=5, seq_len=9, hidden_size=12, expansion=2.0, multiple_of=8,
    L_layers=2, H_cycles=2, L_cycles=2, puzzle_emb_ndim=12, puzzle_emb_len=2,
)  # fmt: skip
ATTENTION = EqRConfig(
    vocab_size=6, seq_len=10, hidden_size=16, num_heads=2, mlp_t=False, pos_encodings="rope",
    expansion=2.0, multiple_of=16, L_layers=1, H_cycles=2, L_cycles=2,
)  # fmt: skip
FIELDS = list(StepOutput.__dataclass_fields__)


def make(cfg: EqRConfig, batch: int = 5, device: torch.device | str = "cpu") -> tuple[EqRNetwork, StepBatch]:
    torch.manual_seed(0)
    model = EqRNetwork(cfg).eval()
    if cfg.puzzle_emb_len:
        with torch.no_grad():  # a non-zero prefix vector, so the prefix path is exercised
            model.puzzle_emb.weights.normal_()
    seeds = torch.tensor([3, -7, 2**33 + 1, 11, 12, 13, 14][:batch])
    z_H, z_L = model.initial_state(seeds)
    sigma = torch.tensor([0.1, 0.0, 0.3, 0.05, 0.2, 0.0, 0.1][:batch])
    inputs = StepBatch(
        z_H=z_H,
        z_L=z_L,
        tokens=torch.randint(1, cfg.vocab_size, (batch, cfg.seq_len)),
        seeds=seeds,
        steps=torch.tensor([0, 3, 1025, 2, 0, 9, 4][:batch]),
        noise=sigma,
        prev_logits=torch.randn(batch, cfg.seq_len, cfg.vocab_size),
        prev_pred=torch.randint(0, cfg.vocab_size, (batch, cfg.seq_len)),
    )
    return model.to(device), StepBatch(*(t.to(device) for t in inputs.tensors()))


def pool_buffers(like: StepBatch, capacity: int) -> StepBatch:
    """Zeroed full-capacity tensors shaped like ``like``'s: what a slot pool hands the graph step."""
    return StepBatch(*(torch.zeros((capacity, *t.shape[1:]), dtype=t.dtype, device=t.device) for t in like.tensors()))


# -- the pre-kernel implementation, kept verbatim to prove the reference path did not move ----------
def _legacy_rms_norm(x: torch.Tensor, eps: float, dim: int = -1) -> torch.Tensor:
    xf = x.float()
    return (xf * torch.rsqrt(xf.square().mean(dim=dim, keepdim=True) + eps)).to(x.dtype)


def _legacy_block(layer: torch.nn.Module, h: torch.Tensor, rope: object) -> torch.Tensor:
    if hasattr(layer, "mlp_t"):
        mlp_t = layer.mlp_t
        gu = torch.matmul(mlp_t.gate_up_proj.weight.to(h.dtype), h)
        gate, up = gu.chunk(2, dim=-2)
        mixed = torch.matmul(mlp_t.down_proj.weight.to(h.dtype), F.silu(gate) * up)
        h = _legacy_rms_norm(h + mixed, layer.eps, dim=-2)
    else:
        h = _legacy_rms_norm(h + layer.self_attn(h, rope), layer.eps)
    gate, up = layer.mlp.gate_up_proj(h).chunk(2, dim=-1)
    return _legacy_rms_norm(h + layer.mlp.down_proj(F.silu(gate) * up), layer.eps)


@torch.no_grad()
def _legacy_iterate(model: EqRNetwork, inputs: StepBatch) -> StepOutput:
    z_H, z_L, tokens, seeds, steps, noise_scale, prev_logits, prev_pred = inputs.tensors()
    cfg, rope, lam = model.cfg, model._rope_tables(), model.cfg.lambda_
    shape = z_H.shape[1:]
    sigma = noise_scale.to(z_H.dtype).view(-1, 1, 1)
    use_noise = bool((noise_scale > 0).any())

    def g(z: torch.Tensor, inj: torch.Tensor, call: int) -> torch.Tensor:
        h = z + inj
        for layer in model.L_level.layers:
            h = _legacy_block(layer, h, rope)
        out = (1 - lam) * z + lam * h
        return out + sigma * rng.normal(seeds, steps, call, shape).to(z.dtype) if use_noise else out

    x = model.embed(tokens)
    new_H, new_L, call = z_H, z_L, 0
    for _ in range(cfg.H_cycles):
        for _ in range(cfg.L_cycles):
            new_L = g(new_L, new_H + x, call)
            call += 1
        new_H = g(new_H, new_L, call)
        call += 1
    logits, q_halt = model.heads(new_H)
    pred = logits.argmax(dim=-1)
    diff = torch.cat([(new_H - z_H).flatten(1), (new_L - z_L).flatten(1)], dim=1).float().norm(dim=1)
    base = torch.cat([z_H.flatten(1), z_L.flatten(1)], dim=1).float().norm(dim=1).clamp_min(1e-12)
    return StepOutput(
        new_H, new_L, logits, pred, q_halt, diff / base, (pred != prev_pred).sum(dim=1),
        (logits.float() - prev_logits.float()).norm(dim=-1).mean(dim=1),
    )  # fmt: skip


def assert_steps_close(actual: StepOutput, expected: StepOutput, tol: float) -> None:
    """Equal to rounding: states, logits and signals within ``tol``; predictions equal wherever the
    reference's top two logits are not a near tie that rounding may flip."""
    for name in ("z_H", "z_L", "logits", "q_halt", "residual", "logit_delta"):
        torch.testing.assert_close(getattr(actual, name).float(), getattr(expected, name).float(), rtol=tol, atol=tol)
    top2 = expected.logits.float().topk(2, dim=-1).values
    clear = (top2[..., 0] - top2[..., 1]) > 10 * tol
    assert torch.equal(actual.pred[clear], expected.pred[clear])
    assert torch.equal(actual.pred, actual.logits.argmax(-1))
    assert (actual.pred_change - expected.pred_change).abs().max() <= (~clear).sum()


@pytest.mark.parametrize("cfg", [MLP_T, ATTENTION], ids=["mlp_t", "attention"])
def test_reference_path_is_bit_identical_to_the_pre_kernel_step(cfg: EqRConfig) -> None:
    model, inputs = make(cfg)
    for sigma in (inputs.noise, torch.zeros(5)):
        args = dataclasses.replace(inputs, noise=sigma)
        new, old = model.iterate(args), _legacy_iterate(model, args)
        for name in FIELDS:
            assert torch.equal(getattr(new, name), getattr(old, name)), name


@pytest.mark.parametrize("cfg", [MLP_T, ATTENTION], ids=["mlp_t", "attention"])
def test_step_with_kernels_equals_reference_step(cfg: EqRConfig, device: torch.device) -> None:
    model, inputs = make(cfg, device=device)
    expected = model.iterate(inputs)
    with dispatch.use_backend("triton"):
        actual = model.iterate(inputs)
    assert_steps_close(actual, expected, 1e-4)


def test_training_keeps_autograd_with_kernels_forced(device: torch.device) -> None:
    """Where autograd records (the last cycle) dispatch runs the reference; the no-grad cycles may use kernels."""
    model, inputs = make(MLP_T, device=device)

    def grads(backend: str) -> list[torch.Tensor]:
        model.zero_grad()
        torch.manual_seed(1)
        with dispatch.use_backend(backend):
            x = model.embed(inputs.tokens)
            z_H, _ = model.recur(inputs.z_H, inputs.z_L, x, lambda call, z: 0.01 * torch.randn_like(z))
        model.heads(z_H)[0].square().mean().backward()
        return [p.grad for p in model.L_level.parameters()]

    expected, actual = grads("reference"), grads("triton")
    for a, e in zip(actual, expected, strict=True):
        assert a is not None
        torch.testing.assert_close(a, e, rtol=1e-3, atol=1e-5)


def test_cpu_step_matches_reference() -> None:
    model, inputs = make(MLP_T, batch=7)
    expected = model.iterate(inputs)
    step = CpuStep(model, workers=2, chunk_columns=2 * MLP_T.hidden_size)  # chunks of 2 slots: 4 chunks
    assert step.chunk == 2
    assert_steps_close(step.iterate(inputs), expected, 1e-4)


def test_cpu_step_is_independent_of_threads_and_batch_company() -> None:
    model, inputs = make(MLP_T, batch=7)
    one = CpuStep(model, workers=1, chunk_columns=MLP_T.hidden_size)
    two = CpuStep(model, workers=2, chunk_columns=MLP_T.hidden_size)
    a, b = one.iterate(inputs), two.iterate(inputs)
    for name in FIELDS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    alone = one.iterate(inputs.rows(5, 4))  # a chunk holds one slot: same numbers alone or batched
    assert torch.equal(alone.z_H[0], a.z_H[4]) and torch.equal(alone.pred[0], a.pred[4])


def test_cpu_step_warms_up_when_built() -> None:
    """The first call's cost (numba's kernels loaded, worker threads started) is paid at construction,
    not by a server's first request: checked in a fresh process, where nothing ran before."""
    code = (
        "import torch\n"
        "from eqr.model.config import EqRConfig\n"
        "from eqr.model.network import EqRNetwork\n"
        "from eqr.runtime import cpu_step\n"
        f"cfg = EqRConfig(**{dataclasses.asdict(MLP_T)!r})\n"
        "step = cpu_step.CpuStep(EqRNetwork(cfg), workers=2)\n"
        "print(len(cpu_step._damped_update.signatures), len(step._pool._threads))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    compiled, threads = map(int, out.split())
    assert compiled >= 1 and threads >= 1


def test_cpu_step_refuses_attention_models() -> None:
    with pytest.raises(ValueError, match="token-mixing"):
        CpuStep(EqRNetwork(ATTENTION))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fallback is for machines without CUDA")
def test_graph_step_falls_back_to_eager_without_cuda(caplog: pytest.LogCaptureFixture) -> None:
    model, inputs = make(MLP_T)
    with caplog.at_level(logging.WARNING, logger="eqr.runtime.graph_step"):
        step = GraphStep(model, pool_buffers(inputs, 8))
    assert step.eager_reason is not None and "CUDA graph step unavailable" in caplog.text
    expected, actual = model.iterate(inputs), step.iterate(inputs)
    for name in FIELDS:
        assert torch.equal(getattr(actual, name), getattr(expected, name)), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_graph_step_replays_the_eager_step() -> None:
    """Replays equal the eager kernel step, for a padded bucket too, and draw each call's own noise."""
    model, inputs = make(MLP_T, batch=5, device="cuda")
    pool = pool_buffers(inputs, 8)
    step = GraphStep(model, pool)
    for live in (5, 3, 5):  # buckets 8, 4, then 8 replayed
        args = inputs.rows(live)
        actual = step.iterate(args)  # other tensors than the pool's: copied in
        assert step.eager_reason is None
        assert_steps_close(actual, model.iterate(args), 1e-4)
    for buf, t in zip(pool.rows(5).tensors(), inputs.tensors(), strict=True):
        buf.copy_(t)
    assert_steps_close(step.iterate(pool.rows(5)), model.iterate(inputs), 1e-4)  # the pool's own rows: no copy
    pool.steps.add_(1)  # the next iteration: new noise, same graph
    moved = dataclasses.replace(inputs, steps=inputs.steps + 1)
    assert_steps_close(step.iterate(pool.rows(5)), model.iterate(moved), 1e-4)
    before = step.iterate(pool.rows(5)).z_L.clone()  # outputs are views of the graph's buffers
    assert not torch.equal(before, step.iterate(inputs).z_L)


def test_graph_buckets_cover_every_live_count() -> None:
    assert buckets_for(8) == [1, 2, 4, 8]
    assert buckets_for(6) == [1, 2, 4, 6]
    assert buckets_for(1) == [1]


def test_make_step_picks_the_cpu_fast_path_for_token_mixing_models(monkeypatch: pytest.MonkeyPatch) -> None:
    (mlp_t, a), (attention, b) = make(MLP_T), make(ATTENTION)
    assert isinstance(make_step(mlp_t, a), CpuStep)
    assert make_step(attention, b) is attention
    assert make_step(mlp_t, a, cpu_fast=False) is mlp_t
    monkeypatch.setenv("EQR_CPU_FAST", "0")
    assert make_step(mlp_t, a) is mlp_t


def test_backend_names_are_checked() -> None:
    with pytest.raises(ValueError, match="backend"):
        dispatch.set_backend("cuda")


@pytest.mark.parametrize("cfg", [MLP_T, ATTENTION], ids=["mlp_t", "attention"])
def test_flop_count_matches_torch_flop_counter(cfg: EqRConfig) -> None:
    model, inputs = make(cfg, batch=3)
    with FlopCounterMode(display=False) as counter:
        model.iterate(inputs)
    expected = iteration_flops(cfg, 3)
    if cfg.mlp_t:
        assert counter.get_total_flops() == expected
    else:  # torch's counter does not see the CPU attention kernel: add its two S×S products
        s, d = cfg.seq_total, cfg.hidden_size
        missing = 3 * cfg.blocks_per_step * 2 * 2 * s * s * d
        assert counter.get_total_flops() in (expected, expected - missing)


@pytest.mark.parametrize(
    ("cores", "hidden", "slots"), [(2, 64, 16), (4, 64, 32), (2, 128, 8), (2, 512, 8), (16, 64, 128)]
)
def test_preferred_slots_fill_every_core_with_one_chunk(monkeypatch, cores, hidden, slots):
    from eqr.runtime import cpu_step
    from eqr.runtime.step import preferred_slots

    monkeypatch.setattr(cpu_step, "available_cores", lambda: cores)
    cfg = EqRConfig(hidden_size=hidden, num_heads=1, expansion=1.0, multiple_of=8, L_layers=1, H_cycles=1, L_cycles=1)
    assert preferred_slots(EqRNetwork(cfg)) == slots  # cores x (512 // hidden) rows, at least 8


def test_the_server_defaults_to_the_preferred_slot_count(tmp_path):
    from eqr.model.checkpoint import load_model
    from eqr.runtime.step import preferred_slots
    from eqr.server.broker.local import LocalBroker
    from eqr.server.settings import Settings
    from tests.live_server import save_tiny_model

    model_dir = save_tiny_model(tmp_path / "tiny")
    auto = LocalBroker.from_settings(Settings(model=model_dir))  # not started: no engine thread to stop
    assert auto.cards["tiny"].caps["slots"] == preferred_slots(load_model(model_dir)[0]) >= 8
    assert LocalBroker.from_settings(Settings(model=model_dir, slots=5)).cards["tiny"].caps["slots"] == 5
