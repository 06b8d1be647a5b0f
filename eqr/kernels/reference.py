"""Plain-torch reference of every fused op of the EqR step.

These are, expression for expression, what ``EqRNetwork`` computed before the kernels existed:
the reference path must keep CPU trajectories bit-identical (same seeds, same numbers) and keep
autograd working for training. The Triton kernels and the CPU fast step are checked against these
functions. Nothing here imports Triton, so this module is always importable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from eqr.kernels import rng


@dataclass(frozen=True)
class SlotNoise:
    """The per-slot noise of one serving iteration: σ·ξ with ξ keyed by (seed, step, call, element).

    Kept as tensors (not a callable) so a kernel can draw the numbers itself from device memory:
    a CUDA graph replay then sees the seeds/steps copied in before it and draws fresh noise.
    """

    seeds: torch.Tensor  # int64 [B]
    steps: torch.Tensor  # int64 [B]
    scale: torch.Tensor  # [B] σ per slot; 0 disables a slot's noise


def rms_norm(x: torch.Tensor, eps: float, dim: int = -1) -> torch.Tensor:
    """Parameter-free RMSNorm, computed in fp32 and cast back."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.square().mean(dim=dim, keepdim=True) + eps)).to(x.dtype)


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, eps: float, dim: int = -1) -> torch.Tensor:
    """Post-norm residual: RMSNorm(x + residual) over ``dim`` (-1: channels, -2: positions for mlp_t)."""
    return rms_norm(x + residual, eps, dim)


def swiglu(gate_up: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """silu(gate)·up, where ``gate_up`` holds [gate | up] halves along ``dim``."""
    gate, up = gate_up.chunk(2, dim=dim)
    return F.silu(gate) * up


def damped_update(z: torch.Tensor, fz: torch.Tensor, lam: float, noise: SlotNoise | None, call: int) -> torch.Tensor:
    """G's combination step (eqr.md §1.4): (1-λ)·z + λ·F(z+inj) + σ·ξ, with ξ from ``rng.normal``.

    On CPU the noise is skipped when every σ is 0 (it would add exact zeros): that test reads the
    device, so on CUDA the noise is always drawn to keep the step free of host synchronisation.
    """
    out = (1 - lam) * z + lam * fz
    if noise is None or (not z.is_cuda and not bool((noise.scale > 0).any())):
        return out
    sigma = noise.scale.to(z.dtype).view(-1, *([1] * (z.dim() - 1)))
    return out + sigma * rng.normal(noise.seeds, noise.steps, call, tuple(z.shape[1:])).to(z.dtype)


def latent_residual(new_H: torch.Tensor, new_L: torch.Tensor, old_H: torch.Tensor, old_L: torch.Tensor) -> torch.Tensor:
    """Per-slot ||z_t - z_{t-1}|| / ||z_{t-1}|| over both latents together, in fp32."""
    diff = torch.cat([(new_H - old_H).flatten(1), (new_L - old_L).flatten(1)], dim=1).float().norm(dim=1)
    base = torch.cat([old_H.flatten(1), old_L.flatten(1)], dim=1).float().norm(dim=1).clamp_min(1e-12)
    return diff / base


def step_deltas(
    logits: torch.Tensor, prev_logits: torch.Tensor, prev_pred: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The eviction signals of one iteration: (pred [B,S], cells changed [B], mean L2 logit change [B])."""
    pred = logits.argmax(dim=-1)
    pred_change = (pred != prev_pred).sum(dim=1)
    logit_delta = (logits.float() - prev_logits.float()).norm(dim=-1).mean(dim=1)
    return pred, pred_change, logit_delta
