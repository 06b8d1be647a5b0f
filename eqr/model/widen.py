"""Widen a trained network without changing what it computes (Net2WiderNet, Chen et al. 2016).

A fine-tune that wants more capacity need not start from scratch: each latent channel is copied
``k`` times, every weight that reads the channels divides by ``k`` so it reads the same sum, and the
SwiGLU's extra inner units start with a zero output column so they add nothing until trained. The
block normalises with a weightless RMSNorm over the channels, whose mean of squares a uniform copy
leaves unchanged, and the token-mixing MLP works per channel with weights shared across channels, so
the widened network maps a copied latent to the copy of the original's next latent. Fresh random
latents differ between the copies; that is what lets training tell the copies apart.

The token-mixing MLP can grow the same way (``token_expansion``): more units over positions, each
starting silent, for a model whose limit is how far and how finely it moves information across the
board rather than what it keeps per cell.

Only token-mixing (``mlp_t``) networks without a puzzle-embedding prefix are widened: attention
would change its head width (and with it the softmax scale and the RoPE frequencies).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from eqr.model.network import EqRConfig, EqRNetwork, swiglu_width, trunc_normal_

# how many supervised steps a row and how often one step applies the block: not weight shapes
RETUNED = ("halt_max_steps", "H_cycles", "L_cycles")
GROWN = ("hidden_size", "token_expansion")


def _more_units(gate_up: torch.Tensor, inner: int, wide_inner: int) -> torch.Tensor:
    """A SwiGLU's [gate | up] rows with ``wide_inner - inner`` fresh units after each half."""
    n_in = gate_up.shape[1]
    std = 1.0 / math.sqrt(n_in)  # a fresh unit's init, as CastedLinear's
    fresh = trunc_normal_(gate_up.new_empty(2, wide_inner - inner, n_in), std)
    return torch.cat([gate_up.view(2, inner, n_in), fresh], dim=1).reshape(2 * wide_inner, n_in)


def _silent_units(down: torch.Tensor, wide_inner: int) -> torch.Tensor:
    """A SwiGLU's output weights with a zero column for each fresh unit: they add nothing until trained."""
    return torch.cat([down, down.new_zeros(down.shape[0], wide_inner - down.shape[1])], dim=1)


def widen(model: EqRNetwork, hidden_size: int, token_expansion: float | None) -> EqRNetwork:
    """A copy of ``model`` computing the same map, at ``hidden_size`` channels (a whole multiple of its
    own) and ``token_expansion`` (the config field: None is the channel MLP's; never narrower).

    Both are the target config's values, with no default: a default could only stand for one of
    "keep the model's mixer" and "the channel MLP's", and the wrong one narrows a grown mixer."""
    cfg = model.cfg
    target = dataclasses.replace(cfg, hidden_size=hidden_size, token_expansion=token_expansion)
    if target == cfg:
        return model
    if not cfg.mlp_t or cfg.puzzle_emb_len:
        raise ValueError("only token-mixing (mlp_t) networks without a puzzle embedding can be widened")
    if hidden_size % cfg.hidden_size:
        raise ValueError(f"hidden_size {hidden_size} is not a whole multiple of {cfg.hidden_size}: cannot widen")
    inner = swiglu_width(cfg.hidden_size, cfg.expansion, cfg.multiple_of)
    wide_inner = swiglu_width(hidden_size, cfg.expansion, cfg.multiple_of)
    mixer = swiglu_width(cfg.seq_total, cfg.mixer_expansion, cfg.multiple_of)
    wide_mixer = swiglu_width(cfg.seq_total, target.mixer_expansion, cfg.multiple_of)
    if wide_mixer < mixer:
        raise ValueError(f"token_expansion {target.mixer_expansion} narrows the token-mixing MLP: cannot widen")
    k = hidden_size // cfg.hidden_size
    wide = EqRNetwork(target)
    old, new = model.state_dict(), {}

    def reads_channels(w: torch.Tensor) -> torch.Tensor:
        return w.repeat(1, k) / k

    with torch.no_grad():
        # x = sqrt(D)·E: the copied table is rescaled so each channel of x keeps its value
        new["embed_tokens.embedding_weight"] = old["embed_tokens.embedding_weight"].repeat(1, k) * math.sqrt(1 / k)
        new["lm_head.weight"] = reads_channels(old["lm_head.weight"])
        new["q_head.weight"] = reads_channels(old["q_head.weight"])
        new["q_head.bias"] = old["q_head.bias"].clone()
        for name, tensor in old.items():
            # the token-mixing MLP works along positions, shared by every channel: only its units grow
            if name.endswith(".mlp_t.gate_up_proj.weight"):
                new[name] = _more_units(tensor, mixer, wide_mixer)
            elif name.endswith(".mlp_t.down_proj.weight"):
                new[name] = _silent_units(tensor, wide_mixer)
            elif name.endswith(".mlp.gate_up_proj.weight"):
                new[name] = _more_units(reads_channels(tensor), inner, wide_inner)
            elif name.endswith(".mlp.down_proj.weight"):
                new[name] = _silent_units(tensor, wide_inner).repeat(k, 1)
    wide.to(model.lm_head.weight.device).load_state_dict(new)  # strict: a tensor not handled above fails here
    return wide


def grow_to(model: EqRNetwork, arch: EqRConfig) -> EqRNetwork:
    """``model``'s weights as a network of ``arch``: the one place that says what a fine-tune may change.

    The step and cycle counts change freely, the channels and the token mixer grow through ``widen``
    (which computes the same map), and any other difference is a different network: refused, naming
    the keys, rather than half-loaded."""
    pairs = {f.name: (getattr(model.cfg, f.name), getattr(arch, f.name)) for f in dataclasses.fields(arch)}
    changed = [f"{key} {a} -> {b}" for key, (a, b) in pairs.items() if a != b and key not in RETUNED + GROWN]
    if changed:
        raise ValueError(
            f"{', '.join(changed)}: a fine-tune may change only {', '.join(RETUNED)} and grow {' and '.join(GROWN)}"
        )
    grown = EqRNetwork(arch).to(model.lm_head.weight.device)
    grown.load_state_dict(widen(model, arch.hidden_size, arch.token_expansion).state_dict())
    return grown
