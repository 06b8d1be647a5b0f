"""Triton kernels for the EqR step; the launch wrappers mirror ``eqr.kernels.reference``.

Imported lazily by ``eqr.kernels.dispatch`` (only when a CUDA tensor, or a test forcing Triton,
needs a kernel), so Triton stays an optional dependency. On CPU the kernels run only under the
interpreter, which must be selected with ``TRITON_INTERPRET=1`` before this module is imported.

Every kernel loads its operands, converts them to fp32 at once and does all arithmetic in fp32
(bf16 arithmetic is also wrong inside the interpreter, triton-lang/triton#4972); results are
rounded to the output dtype only when stored. Inputs may have any strides: a program computes
each element's address from the strides, so views are never copied.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from eqr.kernels import ndtri
from eqr.kernels.reference import SlotNoise

# Whether the kernels below were defined for the interpreter (Triton reads the variable at decoration).
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on")
# Fused multiply-add contraction is what the GPU build does by default; asking for it explicitly
# also silences Triton 3.9's warning about the default changing in 3.10.
_LAUNCH = {"enable_fp_fusion": True}
_TILE = 4096  # elements per program for the reductions: one tile in registers with 4 warps
_MAX_POSITIONS = 8192  # the sequence norm keeps a whole column (all positions) in one tile

# constants of eqr.kernels.rng.hash32 and of ndtri, as compile-time constants of the kernels
_M1 = tl.constexpr(0x7FEB352D)
_M2 = tl.constexpr(0x6B43A9B5)
_P_LOW = tl.constexpr(ndtri.P_LOW)
_A0, _A1, _A2, _A3, _A4, _A5 = (tl.constexpr(c) for c in ndtri.A)
_B0, _B1, _B2, _B3, _B4 = (tl.constexpr(c) for c in ndtri.B)
_C0, _C1, _C2, _C3, _C4, _C5 = (tl.constexpr(c) for c in ndtri.C)
_D0, _D1, _D2, _D3 = (tl.constexpr(c) for c in ndtri.D)


# -- add + RMSNorm --------------------------------------------------------------------------------
@triton.jit
def _add_rms_norm_channels_kernel(
    x_ptr, r_ptr, y_ptr, n_rows, S, D, sxb, sxs, sxd, srb, srs, srd, eps,
    BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """RMSNorm(x + r) over the last axis of [B, S, D]; a program owns BLOCK_M rows (b, s)."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_D)
    b = (rows // S).to(tl.int64)[:, None]
    s = (rows % S).to(tl.int64)[:, None]
    d = cols[None, :]
    mask = (rows < n_rows)[:, None] & (cols < D)[None, :]
    x = tl.load(x_ptr + b * sxb + s * sxs + d * sxd, mask=mask, other=0.0)
    r = tl.load(r_ptr + b * srb + s * srs + d * srd, mask=mask, other=0.0)
    # the reference adds in the input dtype, then normalises in fp32: round the sum the same way
    v = (x.to(tl.float32) + r.to(tl.float32)).to(y_ptr.dtype.element_ty).to(tl.float32)
    inv = tl.rsqrt(tl.sum(v * v, axis=1) / D + eps)
    y = v * inv[:, None]
    tl.store(y_ptr + rows.to(tl.int64)[:, None] * D + d, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _add_rms_norm_positions_kernel(
    x_ptr, r_ptr, y_ptr, S, D, sxb, sxs, sxd, srb, srs, srd, eps,
    BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """RMSNorm(x + r) over the middle (sequence) axis of [B, S, D]; a program owns BLOCK_D columns of a slot."""
    b = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    pos = tl.arange(0, BLOCK_S)
    s = pos.to(tl.int64)[:, None]
    d = cols.to(tl.int64)[None, :]
    mask = (pos < S)[:, None] & (cols < D)[None, :]
    x = tl.load(x_ptr + b * sxb + s * sxs + d * sxd, mask=mask, other=0.0)
    r = tl.load(r_ptr + b * srb + s * srs + d * srd, mask=mask, other=0.0)
    v = (x.to(tl.float32) + r.to(tl.float32)).to(y_ptr.dtype.element_ty).to(tl.float32)
    inv = tl.rsqrt(tl.sum(v * v, axis=0) / S + eps)
    y = v * inv[None, :]
    tl.store(y_ptr + b * S * D + s * D + d, y.to(y_ptr.dtype.element_ty), mask=mask)


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, eps: float, dim: int = -1) -> torch.Tensor:
    """RMSNorm(x + residual) over ``dim`` (-1 or -2) of a tensor with at least 2 (for -2: 3) axes."""
    if dim not in (-1, -2, x.dim() - 1, x.dim() - 2):
        raise ValueError(f"add_rms_norm normalises the last or second-to-last axis, not {dim}")
    over_positions = dim in (-2, x.dim() - 2)
    shape = x.shape
    x3, r3 = (x.unsqueeze(0), residual.unsqueeze(0)) if x.dim() == 2 else (x, residual)
    if x3.dim() > 3:
        x3, r3 = x3.reshape(-1, *shape[-2:]), r3.reshape(-1, *shape[-2:])
    nb, s, d = x3.shape
    y = torch.empty((nb, s, d), dtype=torch.result_type(x, residual), device=x.device)
    strides = (*x3.stride(), *r3.stride())
    if over_positions:
        block_s = triton.next_power_of_2(s)
        if block_s > _MAX_POSITIONS:
            raise ValueError(f"sequence norm over {s} positions exceeds one tile ({_MAX_POSITIONS})")
        block_d = max(1, min(triton.next_power_of_2(d), _TILE // block_s))
        grid = (nb, triton.cdiv(d, block_d))
        _add_rms_norm_positions_kernel[grid](
            x3, r3, y, s, d, *strides, eps, BLOCK_S=block_s, BLOCK_D=block_d, **_LAUNCH
        )
    else:
        block_d = triton.next_power_of_2(d)
        block_m = max(1, _TILE // block_d)
        grid = (triton.cdiv(nb * s, block_m),)
        _add_rms_norm_channels_kernel[grid](
            x3, r3, y, nb * s, s, d, *strides, eps, BLOCK_M=block_m, BLOCK_D=block_d, **_LAUNCH
        )
    return y.view(shape)


# -- SwiGLU activation ------------------------------------------------------------------------------
@triton.jit
def _swiglu_kernel(g_ptr, o_ptr, n, inner, C, s0, s1, s2, BLOCK: tl.constexpr):
    """out[a, i, c] = silu(gu[a, i, c]) · gu[a, i + inner, c] for the flat output index."""
    o = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = o < n
    a = o // (inner * C)
    i = (o // C) % inner
    c = o % C
    base = g_ptr + a * s0 + i * s1 + c * s2
    gate = tl.load(base, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(base + inner * s1, mask=mask, other=0.0).to(tl.float32)
    tl.store(o_ptr + o, (gate * tl.sigmoid(gate) * up).to(o_ptr.dtype.element_ty), mask=mask)


def swiglu(gate_up: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """silu(gate)·up with [gate | up] halves along ``dim``; the output is contiguous."""
    dim = dim % gate_up.dim()
    two_inner = gate_up.shape[dim]
    if two_inner % 2:
        raise ValueError(f"axis {dim} has odd size {two_inner}: no [gate | up] halves")
    shape = list(gate_up.shape)
    shape[dim] //= 2
    # view as [A, 2I, C]: dims before ``dim`` fold into A, dims after into C (reshape copies only if it must)
    lead = gate_up.shape[:dim].numel()
    trail = gate_up.shape[dim + 1 :].numel()
    g3 = gate_up.reshape(lead, two_inner, trail)
    out = torch.empty(shape, dtype=gate_up.dtype, device=gate_up.device)
    n = out.numel()
    block = 1024
    _swiglu_kernel[(triton.cdiv(n, block),)](g3, out, n, two_inner // 2, trail, *g3.stride(), BLOCK=block, **_LAUNCH)
    return out


# -- damped noisy update with the residual sums ----------------------------------------------------------
@triton.jit
def _hash32(x):
    """eqr.kernels.rng.hash32 on uint32 lanes (products wrap mod 2**32, shifts are logical)."""
    x = x ^ (x >> 16)
    x = x * _M1
    x = x ^ (x >> 15)
    x = x * _M2
    return x ^ (x >> 16)


@triton.jit
def _ndtri(p):
    """Inverse normal CDF of p in (0, 1): Acklam's rational approximation (ndtri.py), in fp64.

    In fp32 the central polynomials cancel badly near the tails (1e-4 relative error at p = 0.97);
    fp64 is exact enough that the fp32 result is within an ulp or two of torch.special.ndtri, and
    costs nothing that matters in this memory-bound kernel.
    """
    p = p.to(tl.float64)
    q = p - 0.5
    r = q * q
    central = q * (((((r * _A0 + _A1) * r + _A2) * r + _A3) * r + _A4) * r + _A5)
    central = central / (((((r * _B0 + _B1) * r + _B2) * r + _B3) * r + _B4) * r + 1.0)
    tail_p = tl.minimum(p, 1.0 - p)
    t = tl.sqrt(-2.0 * tl.log(tail_p))
    tail = ((((t * _C0 + _C1) * t + _C2) * t + _C3) * t + _C4) * t + _C5
    tail = tail / ((((t * _D0 + _D1) * t + _D2) * t + _D3) * t + 1.0)
    tail = tl.where(p > 0.5, -tail, tail)
    return tl.where(tail_p < _P_LOW, tail, central).to(tl.float32)


@triton.jit
def _damped_update_kernel(
    z_ptr, f_ptr, base_ptr, out_ptr, part_ptr, seed_ptr, step_ptr, scale_ptr,
    N, D, szb, szs, szd, sfb, sfs, sfd, sbb, sbs, sbd, lam, one_minus_lam, call_bits,
    HAS_NOISE: tl.constexpr, HAS_BASE: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """out = (1-λ)·z + λ·f + σ_b·ξ for BLOCK elements of slot b; optionally the slot's residual sums.

    ξ reproduces eqr.kernels.rng.normal bit for bit up to the ndtri evaluation: the same hash of
    (seed, step·1024 + call, element index) and the same 23-bit uniform.
    """
    b = tl.program_id(0)
    blk = tl.program_id(1)
    j = blk * BLOCK + tl.arange(0, BLOCK)
    mask = j < N
    s = (j // D).to(tl.int64)
    d = (j % D).to(tl.int64)
    b64 = b.to(tl.int64)
    z = tl.load(z_ptr + b64 * szb + s * szs + d * szd, mask=mask, other=0.0).to(tl.float32)
    f = tl.load(f_ptr + b64 * sfb + s * sfs + d * sfd, mask=mask, other=0.0).to(tl.float32)
    new = z * one_minus_lam + f * lam
    if HAS_NOISE:
        seed = tl.load(seed_ptr + b)
        counter = tl.load(step_ptr + b) * 1024 + call_bits
        key = _hash32(seed.to(tl.uint32) ^ _hash32((seed >> 32).to(tl.uint32) ^ _hash32(counter.to(tl.uint32))))
        bits = _hash32(key ^ _hash32(j.to(tl.uint32)))
        u = ((bits >> 9).to(tl.float32) + 0.5) * (1.0 / 8388608.0)
        # the reference casts σ to the latent dtype before scaling
        sigma = tl.load(scale_ptr + b).to(out_ptr.dtype.element_ty).to(tl.float32)
        new = new + _ndtri(u) * sigma
    stored = new.to(out_ptr.dtype.element_ty)
    tl.store(out_ptr + b64 * N + j, stored, mask=mask)
    if HAS_BASE:
        old = tl.load(base_ptr + b64 * sbb + s * sbs + d * sbd, mask=mask, other=0.0).to(tl.float32)
        diff = tl.where(mask, stored.to(tl.float32) - old, 0.0)  # padding lanes carry noise
        part = part_ptr + (b64 * tl.num_programs(1) + blk) * 2
        tl.store(part, tl.sum(diff * diff, axis=0))
        tl.store(part + 1, tl.sum(old * old, axis=0))


def damped_update(
    z: torch.Tensor,
    fz: torch.Tensor,
    lam: float,
    noise: SlotNoise | None,
    call: int,
    base: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(1-λ)·z + λ·fz + σ·ξ on [B, S, D]; with ``base``, also per-slot (Σ(new-base)², Σbase²) [B, 2] fp32.

    The sums are written per program and added afterwards (no atomics), so they are deterministic.
    """
    if z.dim() != 3:
        raise ValueError(f"damped_update expects [B, S, D] latents, got {tuple(z.shape)}")
    nb, s, d = z.shape
    n = s * d
    out = torch.empty((nb, s, d), dtype=z.dtype, device=z.device)
    block = min(1024, triton.next_power_of_2(n))
    nblk = triton.cdiv(n, block)
    part = torch.empty((nb, nblk, 2), dtype=torch.float32, device=z.device) if base is not None else out
    ref = base if base is not None else z
    seeds, steps, scale = (noise.seeds, noise.steps, noise.scale) if noise is not None else (z, z, z)
    _damped_update_kernel[(nb, nblk)](
        z, fz, ref, out, part, seeds, steps, scale,
        n, d, *z.stride(), *fz.stride(), *ref.stride(), float(lam), float(1 - lam), call & 1023,
        HAS_NOISE=noise is not None, HAS_BASE=base is not None, BLOCK=block, **_LAUNCH,
    )  # fmt: skip
    return out, (part.sum(dim=1) if base is not None else None)


# -- eviction signals --------------------------------------------------------------------------------------
@triton.jit
def _step_deltas_kernel(
    l_ptr, p_ptr, pp_ptr, pred_ptr, change_ptr, delta_ptr, S, V,
    slb, sls, slv, spb, sps, spv, sqb, sqs,
    BLOCK_S: tl.constexpr, BLOCK_V: tl.constexpr,
):  # fmt: skip
    """Per slot: argmax per cell, count of cells whose argmax changed, mean L2 change of the logits."""
    b = tl.program_id(0).to(tl.int64)
    v = tl.arange(0, BLOCK_V)[None, :]
    changed = tl.zeros((BLOCK_S,), dtype=tl.int64)
    dist = tl.zeros((BLOCK_S,), dtype=tl.float32)
    for s0 in range(0, S, BLOCK_S):
        cells = s0 + tl.arange(0, BLOCK_S)
        cmask = cells < S
        s = cells.to(tl.int64)[:, None]
        mask = cmask[:, None] & (v < V)
        x = tl.load(l_ptr + b * slb + s * sls + v * slv, mask=mask, other=float("-inf")).to(tl.float32)
        prev = tl.load(p_ptr + b * spb + s * sps + v * spv, mask=mask, other=0.0).to(tl.float32)
        pred = tl.argmax(x, axis=1, tie_break_left=True).to(tl.int64)
        tl.store(pred_ptr + b * S + cells, pred, mask=cmask)
        old = tl.load(pp_ptr + b * sqb + cells.to(tl.int64) * sqs, mask=cmask, other=0)
        changed += ((pred != old) & cmask).to(tl.int64)
        diff = tl.where(mask, x - prev, 0.0)
        dist += tl.sqrt(tl.sum(diff * diff, axis=1))
    tl.store(change_ptr + b, tl.sum(changed, axis=0))
    tl.store(delta_ptr + b, tl.sum(dist, axis=0) / S)


def step_deltas(
    logits: torch.Tensor, prev_logits: torch.Tensor, prev_pred: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pred [B,S] int64, cells changed [B] int64, mean L2 logit change [B] fp32), as the reference."""
    nb, s, v = logits.shape
    pred = torch.empty((nb, s), dtype=torch.int64, device=logits.device)
    change = torch.empty(nb, dtype=torch.int64, device=logits.device)
    delta = torch.empty(nb, dtype=torch.float32, device=logits.device)
    block_v = triton.next_power_of_2(v)
    block_s = max(1, min(triton.next_power_of_2(s), _TILE // block_v))
    _step_deltas_kernel[(nb,)](
        logits, prev_logits, prev_pred, pred, change, delta, s, v,
        *logits.stride(), *prev_logits.stride(), *prev_pred.stride(),
        BLOCK_S=block_s, BLOCK_V=block_v, **_LAUNCH,
    )  # fmt: skip
    return pred, change, delta
