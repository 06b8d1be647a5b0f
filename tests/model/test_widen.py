"""Widening a trained network keeps its map: a copied latent goes where the original's went."""

import pytest
import torch

from eqr.model.config import EqRConfig
from eqr.model.network import EqRNetwork
from eqr.model.widen import widen


def small(**arch) -> EqRNetwork:
    torch.manual_seed(0)
    cfg = dict(vocab_size=6, seq_len=25, hidden_size=16, expansion=2.0, multiple_of=16)
    return EqRNetwork(EqRConfig(**{**cfg, "L_layers": 2, "H_cycles": 2, "L_cycles": 2, **arch})).eval()


@pytest.mark.parametrize(("k", "token_expansion"), [(2, None), (3, None), (1, 6.0), (2, 6.0)])
def test_widened_network_maps_copied_latents_like_the_original(k, token_expansion):
    model = small()
    with torch.no_grad():  # a trained-looking halting head, not the all-zero initial one
        model.q_head.weight.normal_()
    wide = widen(model, 16 * k, token_expansion)
    assert wide.cfg.hidden_size == 16 * k and model.cfg.hidden_size == 16  # the original is untouched
    mixer_units = wide.L_level.layers[0].mlp_t.down_proj.weight.shape[1]
    assert mixer_units == (48 if token_expansion is None else 112)  # 25 positions x 2 (or 6) x 2/3, up to 16s
    tokens = torch.randint(0, 6, (3, 25))
    z_H, z_L = torch.randn(3, 25, 16), torch.randn(3, 25, 16)
    wz_H, wz_L = z_H.repeat(1, 1, k), z_L.repeat(1, 1, k)
    x, wx = model.embed(tokens), wide.embed(tokens)
    assert torch.allclose(wx, x.repeat(1, 1, k), atol=1e-5)
    no_noise = lambda call, z: None  # noqa: E731
    with torch.no_grad():
        # one iteration (six block applications): an untrained block is chaotic, so further
        # iterations would grow float32 rounding, not a difference of maps
        z_H, z_L = model.recur(z_H, z_L, x, no_noise)
        wz_H, wz_L = wide.recur(wz_H, wz_L, wx, no_noise)
        assert torch.allclose(wz_H, z_H.repeat(1, 1, k), atol=1e-5)
        assert torch.allclose(wz_L, z_L.repeat(1, 1, k), atol=1e-5)
        (logits, q), (wlogits, wq) = model.heads(z_H), wide.heads(wz_H)
    assert torch.allclose(wlogits, logits, atol=1e-5) and torch.allclose(wq, q, atol=1e-5)


def test_widening_refuses_what_it_cannot_preserve():
    with pytest.raises(ValueError, match="whole multiple"):
        widen(small(), 24, None)
    with pytest.raises(ValueError, match="narrows the token-mixing MLP"):
        widen(small(), 16, token_expansion=1.0)
    with pytest.raises(ValueError, match="mlp_t"):
        widen(small(mlp_t=False, num_heads=2, pos_encodings="rope"), 32, None)
