"""One entry point per fused op: CUDA tensors go to the Triton kernels, everything else to the reference.

The backend is ``auto`` unless ``EQR_KERNELS`` (``auto``, ``reference`` or ``triton``) or
:func:`use_backend` says otherwise. ``triton`` forces the kernels on CPU tensors too, which runs them
under Triton's interpreter; that needs ``TRITON_INTERPRET=1`` in the environment before
``triton_ops`` is first imported (Triton decides at kernel definition), and is how the tests check
the kernels without a GPU.

The kernels are inference-only: whenever autograd would record the op (grad mode on and an input
requiring grad) the reference runs, so training keeps its gradients on any device.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import torch
import torch.nn.functional as F

from eqr.kernels import reference
from eqr.kernels.reference import SlotNoise

BACKENDS = ("auto", "reference", "triton")
_backend = os.environ.get("EQR_KERNELS", "auto")
if _backend not in BACKENDS:
    raise ValueError(f"EQR_KERNELS must be one of {BACKENDS}, got {_backend!r}")
_HAVE_TRITON = importlib.util.find_spec("triton") is not None


def set_backend(name: str) -> None:
    """Select ``auto``, ``reference`` or ``triton`` for every later op call in this process."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "triton" and not _HAVE_TRITON:
        raise RuntimeError("the triton backend needs the 'triton' package (pip install 'eqr-serve[triton]')")
    _backend = name


@contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Temporarily select a backend (tests and benchmarks)."""
    before = _backend
    set_backend(name)
    try:
        yield
    finally:
        set_backend(before)


def _kernels(*tensors: torch.Tensor) -> ModuleType | None:
    """The Triton ops module if these inputs should run the kernels, else None (use the reference)."""
    if _backend == "reference" or (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)):
        return None
    if _backend == "auto" and not (_HAVE_TRITON and tensors[0].is_cuda):
        return None
    from eqr.kernels import triton_ops

    if not tensors[0].is_cuda and not triton_ops.INTERPRETED:
        raise RuntimeError(
            "Triton kernels on CPU tensors run only in the interpreter: set TRITON_INTERPRET=1 "
            "before eqr.kernels.triton_ops is first imported"
        )
    return triton_ops


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, eps: float, dim: int = -1) -> torch.Tensor:
    """RMSNorm(x + residual) over ``dim``: -1 normalises channels, -2 positions (the mlp_t branch)."""
    ops = _kernels(x, residual)
    return reference.add_rms_norm(x, residual, eps, dim) if ops is None else ops.add_rms_norm(x, residual, eps, dim)


def swiglu(gate_up: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """silu(gate)·up with [gate | up] halves along ``dim``."""
    ops = _kernels(gate_up)
    return reference.swiglu(gate_up, dim) if ops is None else ops.swiglu(gate_up, dim)


def damped_update(
    z: torch.Tensor,
    fz: torch.Tensor,
    lam: float,
    noise: SlotNoise | None,
    call: int,
    base: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(1-λ)·z + λ·fz + σ·ξ, plus the fused residual sums against ``base`` where a kernel ran.

    The sums (per slot: Σ(new-base)², Σbase², fp32 [B, 2]) come back only from the kernel; the
    reference returns None and :func:`latent_residual` then computes the residual itself, exactly
    as before the kernels existed.
    """
    ops = _kernels(z, fz)
    if ops is None:
        return reference.damped_update(z, fz, lam, noise, call), None
    return ops.damped_update(z, fz, lam, noise, call, base)


def latent_residual(
    new_H: torch.Tensor,
    new_L: torch.Tensor,
    old_H: torch.Tensor,
    old_L: torch.Tensor,
    sums: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Per-slot relative latent change over (z_H, z_L); from the fused sums when the update kernel gave them."""
    if sums is None:
        return reference.latent_residual(new_H, new_L, old_H, old_L)
    total = sums[0] + sums[1]
    return total[:, 0].sqrt() / total[:, 1].sqrt().clamp_min(1e-12)


def step_deltas(
    logits: torch.Tensor, prev_logits: torch.Tensor, prev_pred: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pred, cells whose prediction changed, mean L2 logit change) per slot: the eviction signals."""
    ops = _kernels(logits, prev_logits)
    return (
        reference.step_deltas(logits, prev_logits, prev_pred)
        if ops is None
        else ops.step_deltas(logits, prev_logits, prev_pred)
    )


# cuBLAS's Hopper GEMMs want 16-byte-aligned leading dimensions: 8 bf16 / 4 fp32 elements
_ALIGN = 8


def token_mix(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``weight [O, S] @ x[b] [S, D]`` for every slot b: the token-mixing MLP's matmuls, [B, O, D] out.

    On CPU tensors this is ``torch.matmul`` as the reference writes it. On CUDA, ``torch.matmul`` of a
    2-D by a 3-D tensor folds the batch by transposing ``x`` (a strided copy of the whole latent) and
    returns a transposed view, and with S = 97 positions the weight's leading dimension is unaligned, so
    cuBLAS falls back to pre-Hopper kernels: on an H200 at hidden 512, batch 256, those copies and
    GEMMs took 80% of the iteration (scripts/gpu-check's profile). Here the weight is broadcast as a
    stride-0 batch, and S is zero-padded to a multiple of 8 on both operands (exact: the extra
    products are zeros), so one strided-batched GEMM writes a contiguous result.
    """
    if not x.is_cuda or x.dim() != 3:
        return torch.matmul(weight, x)
    return aligned_batched_matmul(weight, x)


def aligned_batched_matmul(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``weight [O, S]`` times every ``x[b] [S, D]`` as one strided-batched GEMM, S padded to ``_ALIGN``."""
    pad = -weight.shape[1] % _ALIGN
    if pad:
        weight, x = F.pad(weight, (0, pad)), F.pad(x, (0, 0, 0, pad))
    return torch.bmm(weight.expand(x.shape[0], -1, -1), x)
