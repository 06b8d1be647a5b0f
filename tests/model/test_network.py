"""The EqR network: shapes, update rule, per-slot determinism, serving step reductions."""

import math

import pytest
import torch

from eqr.kernels import rng
from eqr.model.config import EqRConfig
from eqr.model.network import EqRNetwork, rms_norm, swiglu_width
from eqr.model.step import StepBatch, fresh_batch

TINY = EqRConfig(hidden_size=16, expansion=2.0, multiple_of=16, L_layers=1, H_cycles=2, L_cycles=2, halt_max_steps=4)


def _step(model, tokens, seeds, steps, noise):
    return model.iterate(fresh_batch(model, tokens, seeds, noise, steps))


def test_swiglu_width_matches_paper_examples():
    assert swiglu_width(512, 4, 256) == 1536
    assert swiglu_width(81, 4, 256) == 256
    assert swiglu_width(97, 4, 256) == 512
    assert swiglu_width(128, 4, 256) == 512


def test_paper_parameter_counts():
    head = EqRNetwork(EqRConfig())
    assert sum(p.numel() for p in head.parameters()) == 4_855_298
    released = EqRNetwork(EqRConfig(puzzle_emb_ndim=512, puzzle_emb_len=16))
    assert sum(p.numel() for p in released.parameters()) == 5_028_866
    assert released.state_dict()["puzzle_emb.weights"].shape == (1, 512)


def test_mlp_t_norm_runs_over_positions():
    x = torch.randn(2, 5, 3)
    y = rms_norm(x, 0.0, dim=-2)
    assert torch.allclose(y.square().mean(dim=1), torch.ones(2, 3), atol=1e-4)


def test_initial_state_is_truncated_unit_normal_and_seeded():
    model = EqRNetwork(EqRConfig(hidden_size=64))
    seeds = torch.tensor([1, 2])
    z_H, z_L = model.initial_state(seeds)
    assert z_H.shape == (2, 81, 64)
    assert abs(float(z_H.std()) - 1.0) < 0.03 and float(z_H.abs().max()) <= 2.2738
    assert not torch.equal(z_H, z_L) and not torch.equal(z_H[0], z_H[1])
    assert torch.equal(model.initial_state(seeds)[0], z_H)


def test_noise_is_standard_normal_and_keyed_by_seed_step_call():
    seeds = torch.tensor([5, 6])
    a = rng.normal(seeds, torch.tensor([0, 0]), 0, (100, 50))
    assert abs(float(a.mean())) < 0.02 and abs(float(a.std()) - 1) < 0.02
    assert torch.equal(a, rng.normal(seeds, torch.tensor([0, 0]), 0, (100, 50)))
    assert not torch.equal(a, rng.normal(seeds, torch.tensor([1, 1]), 0, (100, 50)))
    assert not torch.equal(a, rng.normal(seeds, torch.tensor([0, 0]), 1, (100, 50)))
    # a row depends only on its own seed, not on its neighbours
    alone = rng.normal(torch.tensor([6]), torch.tensor([0]), 0, (100, 50))
    assert torch.equal(alone[0], a[1])


def test_damped_update_without_noise_matches_equation():
    torch.manual_seed(0)
    cfg = EqRConfig(hidden_size=16, expansion=2.0, multiple_of=16, L_layers=1, H_cycles=1, L_cycles=1)
    model = EqRNetwork(cfg)
    z_H, z_L = torch.randn(1, 81, 16), torch.randn(1, 81, 16)
    x = torch.randn(1, 81, 16)
    new_H, new_L = model.recur(z_H, z_L, x, lambda call, z: None, grad_last_only=False)
    lam = cfg.lambda_
    expect_L = (1 - lam) * z_L + lam * model.L_level(z_L + z_H + x, None)
    expect_H = (1 - lam) * z_H + lam * model.L_level(z_H + expect_L, None)
    assert torch.allclose(new_L, expect_L, atol=1e-6) and torch.allclose(new_H, expect_H, atol=1e-6)


def test_iterate_is_batch_invariant_for_a_seeded_trajectory():
    torch.manual_seed(0)
    model = EqRNetwork(TINY).eval()
    tokens = torch.randint(1, 11, (6, 81))
    seeds = torch.arange(100, 106)
    steps = torch.tensor([0, 3, 1, 0, 7, 2])
    batched = _step(model, tokens, seeds, steps, 0.1)
    for i in (0, 4):
        alone = _step(model, tokens[i : i + 1], seeds[i : i + 1], steps[i : i + 1], 0.1)
        assert torch.allclose(alone.z_H[0], batched.z_H[i], atol=1e-5)
        assert torch.equal(alone.pred[0], batched.pred[i])


def test_iterate_reductions():
    torch.manual_seed(0)
    model = EqRNetwork(TINY).eval()
    tokens = torch.randint(1, 11, (3, 81))
    seeds = torch.arange(3)
    out = _step(model, tokens, seeds, torch.zeros(3, dtype=torch.long), 0.0)
    assert out.logits.shape == (3, 81, 11) and out.q_halt.shape == (3,)
    assert torch.equal(out.pred, out.logits.argmax(-1))
    assert (out.pred_change == 81).all()  # previous prediction was "none" (-1)
    z_H, z_L = model.initial_state(seeds)
    manual = torch.cat([(out.z_H - z_H).flatten(1), (out.z_L - z_L).flatten(1)], 1).norm(dim=1)
    manual = manual / torch.cat([z_H.flatten(1), z_L.flatten(1)], 1).norm(dim=1)
    assert torch.allclose(out.residual, manual, atol=1e-5)
    again = model.iterate(
        StepBatch(
            z_H=out.z_H,
            z_L=out.z_L,
            tokens=tokens,
            seeds=seeds,
            steps=torch.ones(3, dtype=torch.long),
            noise=torch.zeros(3),
            prev_logits=out.logits,
            prev_pred=out.pred,
        )
    )
    expect = (again.logits - out.logits).norm(dim=-1).mean(dim=1)
    assert torch.allclose(again.logit_delta, expect, atol=1e-5)
    assert torch.equal(again.pred_change, (again.pred != out.pred).sum(1))


@pytest.mark.parametrize("prefix", [0, 16])
def test_attention_variant_with_rope_and_prefix(prefix):
    cfg = EqRConfig(
        vocab_size=6,
        seq_len=36,
        hidden_size=16,
        num_heads=2,
        mlp_t=False,
        pos_encodings="rope",
        expansion=2.0,
        multiple_of=16,
        L_layers=1,
        H_cycles=1,
        L_cycles=1,
        puzzle_emb_ndim=16 if prefix else 0,
        puzzle_emb_len=prefix,
    )
    model = EqRNetwork(cfg).eval()
    tokens = torch.randint(1, 6, (2, 36))
    out = _step(model, tokens, torch.arange(2), torch.zeros(2, dtype=torch.long), 0.01)
    assert out.z_H.shape == (2, 36 + prefix, 16) and out.logits.shape == (2, 36, 6)
    assert model.embed(tokens).shape == (2, 36 + prefix, 16)
    assert torch.allclose(model.embed(tokens)[:, prefix:], model.embed_tokens(tokens) * math.sqrt(16))


def test_uniforms_never_reach_the_open_interval_ends():
    # the largest hash output must map strictly inside (0, 1): ndtri would give ±inf
    u = rng.bits_to_uniform(torch.tensor([0, 0xFFFFFFFF], dtype=torch.int64))
    assert float(u[0]) > 0.0 and float(u[1]) < 1.0
    assert torch.isfinite(torch.special.ndtri(u)).all()
    noise = rng.normal(torch.arange(64), torch.arange(64), 3, (81, 64))
    assert torch.isfinite(noise).all()
