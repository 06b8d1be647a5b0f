"""The EqR network (eqr.md §1): one shared recurrent block iterated to a fixed point.

Module and parameter names match the paper's canonical checkpoint names (``embed_tokens``,
``puzzle_emb``, ``lm_head``, ``q_head``, ``L_level.layers.{i}.{mlp_t,self_attn,mlp}``) so a
converted paper checkpoint loads with a plain ``load_state_dict``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from eqr.kernels import dispatch as kernels
from eqr.kernels import rng
from eqr.kernels.reference import SlotNoise
from eqr.kernels.reference import rms_norm as rms_norm  # re-exported: it lived here before the kernels
from eqr.model.config import EqRConfig
from eqr.model.step import StepBatch, StepOutput

NoiseFn = Callable[[int, torch.Tensor], "torch.Tensor | None"]


def trunc_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """JAX-style truncated normal at ±2 compensated std (the paper's parameter init)."""
    with torch.no_grad():
        nn.init.trunc_normal_(tensor, std=std * 1.13685, a=-2.0 * std * 1.13685, b=2.0 * std * 1.13685)
    return tensor


def swiglu_width(hidden: int, expansion: float, multiple_of: int) -> int:
    """Inner width: round(expansion·h·2/3) (banker's rounding) rounded up to ``multiple_of``."""
    inner = round(expansion * hidden * 2 / 3)
    return -(-inner // multiple_of) * multiple_of


class CastedLinear(nn.Module):
    """Linear layer with fp32 weights cast to the activation dtype at use."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(trunc_normal_(torch.empty(out_features, in_features), 1.0 / math.sqrt(in_features)))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), bias)


class CastedEmbedding(nn.Module):
    def __init__(self, num: int, dim: int) -> None:
        super().__init__()
        self.embedding_weight = nn.Parameter(trunc_normal_(torch.empty(num, dim), 1.0 / math.sqrt(dim)))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.embedding_weight)


class PuzzleEmbedding(nn.Module):
    """The paper's puzzle-identifier table; a buffer, zero-initialised (only id 0 is used here)."""

    def __init__(self, num_ids: int, ndim: int) -> None:
        super().__init__()
        self.register_buffer("weights", torch.zeros(num_ids, ndim))


class SwiGLU(nn.Module):
    def __init__(self, hidden: int, expansion: float, multiple_of: int) -> None:
        super().__init__()
        inner = swiglu_width(hidden, expansion, multiple_of)
        self.gate_up_proj = CastedLinear(hidden, 2 * inner)
        self.down_proj = CastedLinear(inner, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(kernels.swiglu(self.gate_up_proj(x)))

    def over_positions(self, h: torch.Tensor) -> torch.Tensor:
        """Apply along the sequence axis of ``h`` [B, S, D] without transposing it (token mixing)."""
        gu = kernels.token_mix(self.gate_up_proj.weight.to(h.dtype), h)  # [B, 2I, D]
        return kernels.token_mix(self.down_proj.weight.to(h.dtype), kernels.swiglu(gu, dim=-2))  # [B, S, D]


def rope_tables(seq: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    # 1 / θ^(i/hd), as the official code writes it: θ^(-i/hd) rounds three of the frequencies one fp32
    # ulp apart, which the recurrence grows to ~1e-4 in the logits of a converted paper checkpoint
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq, dtype=torch.float32), inv_freq)
    emb = torch.cat([angles, angles], dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE on [B, S, H, hd], in fp32."""
    xf = x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (xf * cos[:, None, :] + rotated * sin[:, None, :]).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: EqRConfig) -> None:
        super().__init__()
        self.heads = cfg.num_heads
        self.head_dim = cfg.hidden_size // cfg.num_heads
        self.qkv_proj = CastedLinear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.o_proj = CastedLinear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, h: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        b, s, d = h.shape
        qkv = self.qkv_proj(h).view(b, s, 3 * self.heads, self.head_dim)
        q, k, v = qkv.split(self.heads, dim=2)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.o_proj(out.transpose(1, 2).reshape(b, s, d))


class ReasoningBlock(nn.Module):
    """Post-norm block: token mixing (MLP over positions, or attention), then a channel SwiGLU."""

    def __init__(self, cfg: EqRConfig) -> None:
        super().__init__()
        self.eps = cfg.rms_norm_eps
        if cfg.mlp_t:
            self.mlp_t = SwiGLU(cfg.seq_total, cfg.mixer_expansion, cfg.multiple_of)
        else:
            self.self_attn = Attention(cfg)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.expansion, cfg.multiple_of)

    def forward(self, h: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        if hasattr(self, "mlp_t"):
            # the paper normalises the transposed tensor over its last axis: the sequence (eqr.md §1.3)
            h = kernels.add_rms_norm(h, self.mlp_t.over_positions(h), self.eps, dim=-2)
        else:
            h = kernels.add_rms_norm(h, self.self_attn(h, rope), self.eps)
        return kernels.add_rms_norm(h, self.mlp(h), self.eps)


class NoisyReasoningModule(nn.Module):
    def __init__(self, cfg: EqRConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList([ReasoningBlock(cfg) for _ in range(cfg.L_layers)])

    def forward(self, h: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        for layer in self.layers:
            h = layer(h, rope)
        return h


class EqRNetwork(nn.Module):
    def __init__(self, cfg: EqRConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_size
        self.embed_scale = math.sqrt(d)
        self.embed_tokens = CastedEmbedding(cfg.vocab_size, d)
        if cfg.puzzle_emb_len > 0:
            self.puzzle_emb = PuzzleEmbedding(1, cfg.puzzle_emb_ndim)
        self.lm_head = CastedLinear(d, cfg.vocab_size)
        self.q_head = CastedLinear(d, 2, bias=True)
        with torch.no_grad():  # start "not halted" so learned halting bootstraps gently (as in TRM)
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5.0)
        self.L_level = NoisyReasoningModule(cfg)
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None
        if not cfg.mlp_t and cfg.pos_encodings == "rope":
            cos, sin = rope_tables(cfg.seq_total, d // cfg.num_heads, cfg.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)

    # -- pieces -----------------------------------------------------------------------------
    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """x = sqrt(D)·[prefix; Embed(tokens)], shape [B, S_total, D]."""
        x = self.embed_tokens(tokens)
        if self.cfg.puzzle_emb_len > 0:
            b, d = tokens.shape[0], self.cfg.hidden_size
            flat = F.pad(self.puzzle_emb.weights[0], (0, self.cfg.puzzle_emb_len * d - self.cfg.puzzle_emb_ndim))
            x = torch.cat([flat.view(1, self.cfg.puzzle_emb_len, d).expand(b, -1, -1).to(x.dtype), x], dim=1)
        return x * self.embed_scale

    def heads(self, z_H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.lm_head(z_H[:, self.cfg.puzzle_emb_len :])
        q_halt = self.q_head(z_H[:, 0]).float()[:, 0]
        return logits, q_halt

    def initial_state(self, seeds: torch.Tensor, std: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Fresh random (z_H, z_L) per trajectory, drawn from its seed (eqr.md §1.5)."""
        shape = (self.cfg.seq_total, self.cfg.hidden_size)
        std = self.cfg.init_std if std is None else std
        dtype = self.embed_tokens.embedding_weight.dtype
        z_H = rng.truncated_normal(seeds, rng.INIT_H_CALL, shape, std).to(dtype)
        z_L = rng.truncated_normal(seeds, rng.INIT_L_CALL, shape, std).to(dtype)
        return z_H, z_L

    def _rope_tables(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        return (self.rope_cos, self.rope_sin) if hasattr(self, "rope_cos") else None

    def recur(
        self,
        z_H: torch.Tensor,
        z_L: torch.Tensor,
        x: torch.Tensor,
        noise: NoiseFn | SlotNoise,
        grad_last_only: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One ACT step of latent updates (eqr.md §1.4).

        ``noise`` is either a callable ``noise(call, z)`` returning σ·ξ or None (training), or the
        serving step's counter-based :class:`SlotNoise`, which the update kernel draws itself.
        With ``grad_last_only`` the first H_cycles-1 cycles run without autograd, as in training.
        """
        z_H, z_L, _ = self._recur(z_H, z_L, x, noise, grad_last_only)
        return z_H, z_L

    def _recur(
        self,
        z_H: torch.Tensor,
        z_L: torch.Tensor,
        x: torch.Tensor,
        noise: NoiseFn | SlotNoise,
        grad_last_only: bool,
        base: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """``recur``, plus the residual sums the update kernel fuses into the last update of each latent.

        ``base`` is the iteration's starting (z_H, z_L); the sums come back only where a kernel ran.
        """
        cfg, rope, lam = self.cfg, self._rope_tables(), self.cfg.lambda_

        def g(
            z: torch.Tensor, inj: torch.Tensor, call: int, ref: torch.Tensor | None
        ) -> tuple[torch.Tensor, torch.Tensor | None]:
            fz = self.L_level(z + inj, rope)
            if isinstance(noise, SlotNoise):
                return kernels.damped_update(z, fz, lam, noise, call, ref)
            out = (1 - lam) * z + lam * fz
            xi = noise(call, z)
            return (out if xi is None else out + xi), None

        sums_H = sums_L = None
        call = 0
        for h in range(cfg.H_cycles):
            last_cycle = h == cfg.H_cycles - 1
            ctx = torch.no_grad() if grad_last_only and not last_cycle else nullcontext()
            with ctx:
                for i in range(cfg.L_cycles):
                    last_L = base is not None and last_cycle and i == cfg.L_cycles - 1
                    z_L, sums_L = g(z_L, z_H + x, call, base[1] if last_L else None)
                    call += 1
                z_H, sums_H = g(z_H, z_L, call, base[0] if base is not None and last_cycle else None)
                call += 1
        return z_H, z_L, (None if sums_H is None or sums_L is None else (sums_H, sums_L))

    # -- the serving step ---------------------------------------------------------------------
    @torch.no_grad()
    def iterate(self, batch: StepBatch) -> StepOutput:
        """Advance every slot of ``batch`` by one iteration, vectorised over slots (the reference step).

        On CUDA the fused ops run as Triton kernels and nothing here reads the device, so the whole
        call can be captured in a CUDA graph.
        """
        z_H, z_L = batch.z_H, batch.z_L
        x = self.embed(batch.tokens)
        noise = SlotNoise(batch.seeds, batch.steps, batch.noise)
        new_H, new_L, sums = self._recur(z_H, z_L, x, noise, grad_last_only=False, base=(z_H, z_L))
        logits, q_halt = self.heads(new_H)
        pred, pred_change, logit_delta = kernels.step_deltas(logits, batch.prev_logits, batch.prev_pred)
        return StepOutput(
            z_H=new_H,
            z_L=new_L,
            logits=logits,
            pred=pred,
            q_halt=q_halt,
            residual=kernels.latent_residual(new_H, new_L, z_H, z_L, sums),
            pred_change=pred_change,
            logit_delta=logit_delta,
        )
