"""Counter-based random numbers, so each trajectory's randomness depends only on its own seed.

A serving batch mixes trajectories of many requests. Drawing noise from one shared generator
would make a request's answer depend on who else is in the batch. Instead every random number
is a hash of (trajectory seed, iteration, call index, element index): the same seed yields the
same trajectory alone or batched, on any batch size, with no per-slot Python loop.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Sequence

import numpy as np
import torch

_MASK = 0xFFFFFFFF
_M1 = 0x7FEB352D
_M2 = 0x6B43A9B5  # both < 2**31 so 32-bit x constant products fit in int64
_TRUNC = 2.0  # truncation in compensated std units (eqr.md §1.5)
_TRUNC_COMP = 1.13685  # std compensation so the truncated normal has unit std
_LO = 0.5 * (1.0 + math.erf(-_TRUNC / math.sqrt(2.0)))
_HI = 1.0 - _LO

# call indices reserved for the initial latents; noise calls use 0, 1, 2, ...
INIT_H_CALL = -1
INIT_L_CALL = -2


_M64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """SplitMix64 finaliser: a bijective 64-bit mixer, so nearby inputs give unrelated outputs."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def puzzle_key(tokens: np.ndarray | Sequence[int]) -> int:
    """A 64-bit digest of a puzzle's tokens: the same puzzle in any input form has the same key."""
    data = np.ascontiguousarray(tokens, dtype=np.int64).tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def trajectory_seed(seed: int, puzzle: int, index: int) -> int:
    """Seed of trajectory ``index`` of the puzzle with key ``puzzle`` run with seed ``seed`` (63 bits).

    The one seed derivation of the project: the engine, ``eqr solve --seed`` and ``eqr eval --seed``
    all use it, so a seed names the same trajectories offline and over HTTP. The puzzle is part of
    the key so that an evaluation with one seed still starts every puzzle from its own random
    latents (with a shared start, one unlucky latent would move the whole set's accuracy
    together); hashing keeps siblings independent, and trajectory k is the same whatever the breadth.
    """
    return _mix64(_mix64(_mix64(seed) ^ puzzle) ^ index) >> 1


def trajectory_seeds(seed: int, puzzle: int, breadth: int) -> list[int]:
    """Seeds of trajectories ``0..breadth-1`` of one puzzle run with seed ``seed``."""
    return [trajectory_seed(seed, puzzle, k) for k in range(breadth)]


def random_seed() -> int:
    """A request seed for callers that gave none (reported back, so the run can be repeated)."""
    return secrets.randbits(63)


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixer on int64 tensors holding values in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = (x * _M1) & _MASK
    x = x ^ (x >> 15)
    x = (x * _M2) & _MASK
    return x ^ (x >> 16)


def _uniform(seeds: torch.Tensor, counter: torch.Tensor, numel: int) -> torch.Tensor:
    """Uniforms in (0, 1) of shape [B, numel]; ``seeds``/``counter`` are int64 [B]."""
    key = hash32((seeds & _MASK) ^ hash32(((seeds >> 32) & _MASK) ^ hash32(counter & _MASK)))
    idx = torch.arange(numel, device=seeds.device, dtype=torch.int64)
    return bits_to_uniform(hash32(key[:, None] ^ hash32(idx)[None, :]))


def bits_to_uniform(bits: torch.Tensor) -> torch.Tensor:
    """32-bit hashes to uniforms strictly inside (0, 1).

    23 bits are kept so k + 0.5 is exact in float32 and u never rounds to 1.0 (ndtri(1) = inf).
    """
    return ((bits >> 9).to(torch.float32) + 0.5) * (1.0 / (1 << 23))


def _counter(steps: torch.Tensor, call: int) -> torch.Tensor:
    # iteration and call index folded into one 32-bit counter (calls < 1024 per iteration)
    return steps * 1024 + (call & 1023)


def normal(seeds: torch.Tensor, steps: torch.Tensor, call: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal noise [B, *shape] for G-call ``call`` of iteration ``steps`` of each trajectory."""
    u = _uniform(seeds, _counter(steps, call), math.prod(shape))
    return torch.special.ndtri(u).view(seeds.shape[0], *shape)


def truncated_normal(seeds: torch.Tensor, call: int, shape: tuple[int, ...], std: float = 1.0) -> torch.Tensor:
    """The paper's initial-latent distribution: JAX-style truncated normal with realised std ``std``."""
    counter = torch.zeros_like(seeds)
    u = _uniform(seeds, _counter(counter, call), math.prod(shape))
    x = torch.special.ndtri(_LO + u * (_HI - _LO)) * (_TRUNC_COMP * std)
    return x.view(seeds.shape[0], *shape)
