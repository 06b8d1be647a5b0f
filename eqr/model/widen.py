"""Widen a trained network without changing what it computes (Net2WiderNet, Chen et al. 2016).

A fine-tune that wants more capacity need not start from scratch: each latent channel is copied
``k`` times, every weight that reads the channels divides by ``k`` so it reads the same sum, and the
SwiGLU's extra inner units start with a zero output column so they add nothing until trained. The
block normalises with a weightless RMSNorm over the channels, whose mean of squares a uniform copy
leaves unchanged, and the token-mixing MLP works per channel with weights shared across channels, so
the widened network maps a copied latent to the copy of the original's next latent. Fresh random
latents differ between the copies; that is what lets training tell the copies apart.

Only token-mixing (``mlp_t``) networks without a puzzle-embedding prefix are widened: attention
would change its head width (and with it the softmax scale and the RoPE frequencies).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from eqr.model.network import EqRNetwork, swiglu_width, trunc_normal_


def widen(model: EqRNetwork, hidden_size: int) -> EqRNetwork:
    """A copy of ``model`` at ``hidden_size`` channels (a whole multiple of its own) computing the same map."""
    cfg = model.cfg
    if hidden_size == cfg.hidden_size:
        return model
    if not cfg.mlp_t or cfg.puzzle_emb_len:
        raise ValueError("only token-mixing (mlp_t) networks without a puzzle embedding can be widened")
    if hidden_size % cfg.hidden_size:
        raise ValueError(f"hidden_size {hidden_size} is not a whole multiple of {cfg.hidden_size}: cannot widen")
    k = hidden_size // cfg.hidden_size
    wide = EqRNetwork(dataclasses.replace(cfg, hidden_size=hidden_size))
    old, new = model.state_dict(), {}
    inner = swiglu_width(cfg.hidden_size, cfg.expansion, cfg.multiple_of)
    wide_inner = swiglu_width(hidden_size, cfg.expansion, cfg.multiple_of)

    def reads_channels(w: torch.Tensor) -> torch.Tensor:
        return w.repeat(1, k) / k

    with torch.no_grad():
        # x = sqrt(D)·E: the copied table is rescaled so each channel of x keeps its value
        new["embed_tokens.embedding_weight"] = old["embed_tokens.embedding_weight"].repeat(1, k) * math.sqrt(1 / k)
        new["lm_head.weight"] = reads_channels(old["lm_head.weight"])
        new["q_head.weight"] = reads_channels(old["q_head.weight"])
        new["q_head.bias"] = old["q_head.bias"].clone()
        for name, tensor in old.items():
            if ".mlp_t." in name:  # works along positions, shared by every channel
                new[name] = tensor.clone()
            elif name.endswith(".mlp.gate_up_proj.weight"):
                std = 1.0 / math.sqrt(hidden_size)  # a fresh unit's init, as CastedLinear's
                fresh = trunc_normal_(tensor.new_empty(2, wide_inner - inner, hidden_size), std)
                halves = reads_channels(tensor).view(2, inner, hidden_size)  # [gate | up]
                new[name] = torch.cat([halves, fresh], dim=1).reshape(2 * wide_inner, hidden_size)
            elif name.endswith(".mlp.down_proj.weight"):
                new[name] = torch.cat([tensor, tensor.new_zeros(cfg.hidden_size, wide_inner - inner)], 1).repeat(k, 1)
    wide.to(model.lm_head.weight.device).load_state_dict(new)  # strict: a tensor not handled above fails here
    return wide
