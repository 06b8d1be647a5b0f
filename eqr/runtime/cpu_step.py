"""The CPU fast step: ``EqRNetwork.iterate`` for the mlp_t (token-mixing MLP) network, laid out for a few cores.

Why the reference ops are slow on a CPU (measured, 2 cores, batch 64, hidden 128: the eager step
runs at ~15% of the machine's fp32 matmul rate): the token-mixing matmul materialises a
[B, 2I, D] intermediate far larger than cache and copies it to transpose it back; the
counter-based noise costs ~20 passes of int64 torch ops per G call; every elementwise op streams
tensors that fell out of cache; every small op pays an OpenMP barrier.

What this step does instead (same maths, fp32):

- layout: a chunk of k slots is held sequence-major, [S, k, D]. Token mixing is then one plain
  matmul ``W[2I, S] @ H[S, k·D]`` and the channel MLP one matmul on the [S·k, D] rows, with no
  transposes. The norm over positions reduces the leading axis.
- cache blocking: k is chosen so k·D is about 512 columns, and a chunk runs the *whole*
  iteration (every G call) while its state and intermediates stay in L2.
- threads: chunks are independent, so one worker per core takes chunks from a queue, each with a
  single intra-op thread: no barriers inside ops, and a core that is busy elsewhere simply takes
  fewer chunks.
- noise + damped update + residual sums: one numba pass per G call, drawing exactly
  ``eqr.kernels.rng``'s uniforms and turning them into normals with Acklam's ndtri (ndtri.py).

Results agree with the reference to fp32 rounding (other summation orders, another ndtri
evaluation), not bit for bit: ``EqRNetwork.iterate`` on CPU stays the bit-exact path.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numba as nb
import numpy as np
import torch
import torch.nn.functional as F

from eqr.kernels import ndtri, reference, rng
from eqr.model.network import EqRNetwork
from eqr.model.step import StepBatch, StepOutput, fresh_batch

_MASK = 0xFFFFFFFF
_A, _B, _C, _D, _P_LOW = ndtri.A, ndtri.B, ndtri.C, ndtri.D, ndtri.P_LOW
CHUNK_COLUMNS = 512  # k·D per chunk: measured best on a 2 MiB-L2 core (256..1024 within 3%)


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@nb.njit(cache=True, inline="always")
def _hash32(x: int) -> int:
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK
    x = x ^ (x >> 15)
    x = (x * 0x6B43A9B5) & _MASK
    return x ^ (x >> 16)


@nb.njit(cache=True, inline="always")
def _ndtri(p: float) -> float:
    """Acklam's inverse normal CDF in float64 (see ndtri.py)."""
    tail_p = min(p, 1.0 - p)
    if tail_p < _P_LOW:
        t = math.sqrt(-2.0 * math.log(tail_p))
        x = (((((_C[0] * t + _C[1]) * t + _C[2]) * t + _C[3]) * t + _C[4]) * t + _C[5]) / (
            (((_D[0] * t + _D[1]) * t + _D[2]) * t + _D[3]) * t + 1.0
        )
        return -x if p > 0.5 else x
    q = p - 0.5
    r = q * q
    num = (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]) * q
    return num / (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0)


@nb.njit(cache=True, nogil=True)
def _damped_update(z, fz, out, seeds, steps, call_bits, hidx, sigma, keep, lam, base, sums):  # type: ignore[no-untyped-def]
    """out = keep·z + lam·fz + σ_b·ξ on [S, k, D] fp32; with a non-empty ``base``, add the slot's
    (Σ(out-base)², Σbase²) to ``sums`` [k, 2].

    ξ[s, b, d] is eqr.kernels.rng.normal's number for element s·D + d of slot b: the key hashes
    (seed, step·1024 + call) and the element hash comes from ``hidx`` = hash32(s·D + d).
    The arithmetic order matches the reference's fp32 ops, so without noise the update is exact.
    """
    n_s, n_b, n_d = z.shape
    track = base.shape[0] > 0
    for b in range(n_b):
        seed = seeds[b]
        key = _hash32((seed & _MASK) ^ _hash32(((seed >> 32) & _MASK) ^ _hash32((steps[b] * 1024 + call_bits) & _MASK)))
        sg = sigma[b]
        diff2 = 0.0
        base2 = 0.0
        for s in range(n_s):
            for d in range(n_d):
                v = keep * z[s, b, d] + lam * fz[s, b, d]
                if sg != 0:
                    u = (np.float32(_hash32(key ^ hidx[s, d]) >> 9) + np.float32(0.5)) * np.float32(1.0 / 8388608.0)
                    v = v + sg * np.float32(_ndtri(np.float64(u)))
                out[s, b, d] = v
                if track:
                    old = base[s, b, d]
                    diff2 += np.float64(v - old) ** 2
                    base2 += np.float64(old) ** 2
        if track:
            sums[b, 0] += diff2
            sums[b, 1] += base2


class CpuStep:
    """A drop-in for ``EqRNetwork.iterate`` (a :class:`StepBatch` in, a :class:`StepOutput` out) on CPU.

    Reads the model's fp32 weights in place (views), so later in-place weight updates are seen.
    """

    def __init__(self, model: EqRNetwork, workers: int | None = None, chunk_columns: int = CHUNK_COLUMNS) -> None:
        cfg = model.cfg
        if not cfg.mlp_t:
            raise ValueError("CpuStep implements the token-mixing MLP block; attention models use model.iterate")
        self.model = model
        self.cfg = cfg
        self.workers = workers or available_cores()
        self.chunk = max(1, chunk_columns // cfg.hidden_size)
        # chunks always run on the pool's threads, one worker included: a thread's floating-point
        # state (flush-to-zero, set by whatever else ran on the caller's thread) then never decides
        # a slot's numbers, and workers=1 and workers=2 agree bit for bit
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="eqr-cpu-step")
        s, d = cfg.seq_total, cfg.hidden_size
        self._hidx = rng.hash32(torch.arange(s * d, dtype=torch.int64)).view(s, d).numpy()
        self._layers = [
            (
                layer.mlp_t.gate_up_proj.weight.detach().float(),  # [2It, S]
                layer.mlp_t.down_proj.weight.detach().float(),  # [S, It]
                layer.mlp.gate_up_proj.weight.detach().float().t(),  # [D, 2I]
                layer.mlp.down_proj.weight.detach().float().t(),  # [I, D]
            )
            for layer in model.L_level.layers
        ]
        self._warm_up()

    def _warm_up(self) -> None:
        """Run one chunk of blank slots once. The first call in a process loads the numba kernels
        (about a second on this 2-core CPU) and starts the worker threads: a server pays that when it
        starts, not in its first request's latency, and a benchmark does not time it."""
        tokens = torch.zeros(self.chunk, self.cfg.seq_len, dtype=torch.long)
        self.iterate(fresh_batch(self.model, tokens, torch.zeros(self.chunk, dtype=torch.long), 0.0))

    def _block(self, h: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """One post-norm ReasoningBlock on a sequence-major chunk [S, k, D]."""
        t_gu, t_down, c_gu, c_down = weights
        s, k, d = h.shape
        eps = self.cfg.rms_norm_eps
        hf = h.view(s, k * d)
        gu = torch.mm(t_gu, hf)
        half = gu.shape[0] // 2
        t = torch.mm(t_down, F.silu(gu[:half], inplace=True).mul_(gu[half:])).add_(hf)
        t.mul_(torch.rsqrt(t.square().mean(dim=0, keepdim=True).add_(eps)))  # over positions
        rows = t.view(s * k, d)
        gu = torch.mm(rows, c_gu)
        half = gu.shape[1] // 2
        o = torch.mm(F.silu(gu[:, :half], inplace=True).mul_(gu[:, half:]), c_down).add_(rows)
        o.mul_(torch.rsqrt(o.square().mean(dim=1, keepdim=True).add_(eps)))  # over channels
        return o.view(s, k, d)

    def _g(
        self,
        z: torch.Tensor,
        inj: torch.Tensor,
        call: int,
        noise: tuple[np.ndarray, np.ndarray, np.ndarray],
        base: torch.Tensor | None,
        sums: np.ndarray,
    ) -> torch.Tensor:
        h = z + inj
        for weights in self._layers:
            h = self._block(h, weights)
        out = torch.empty_like(z)
        lam = self.cfg.lambda_
        empty = np.empty((0, 0, 0), np.float32)
        _damped_update(
            z.numpy(), h.numpy(), out.numpy(), *noise[:2], call & 1023, self._hidx, noise[2],
            np.float32(1 - lam), np.float32(lam), empty if base is None else base.numpy(), sums,
        )  # fmt: skip
        return out

    def _run_chunk(
        self,
        rows: slice,
        state: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        noise: tuple[np.ndarray, np.ndarray, np.ndarray],
        out: tuple[torch.Tensor, torch.Tensor],
        sums: np.ndarray,
    ) -> None:
        """The whole iteration for the slots ``rows``, in a sequence-major copy that stays in cache."""
        cfg = self.cfg
        z_H0, z_L0, x = (t[rows].transpose(0, 1).float().contiguous() for t in state)
        slot_noise = tuple(a[rows] for a in noise)
        z_H, z_L = z_H0, z_L0
        call = 0
        for h in range(cfg.H_cycles):
            last_cycle = h == cfg.H_cycles - 1
            for i in range(cfg.L_cycles):
                last = last_cycle and i == cfg.L_cycles - 1
                z_L = self._g(z_L, z_H + x, call, slot_noise, z_L0 if last else None, sums[1, rows])
                call += 1
            z_H = self._g(z_H, z_L, call, slot_noise, z_H0 if last_cycle else None, sums[0, rows])
            call += 1
        out[0][rows] = z_H.transpose(0, 1)
        out[1][rows] = z_L.transpose(0, 1)

    @torch.no_grad()
    def iterate(self, batch: StepBatch) -> StepOutput:
        """Advance every slot by one iteration; see ``EqRNetwork.iterate``."""
        model = self.model
        z_H, z_L, n = batch.z_H, batch.z_L, batch.size
        x = model.embed(batch.tokens)
        # every chunk has the same shape (the last one padded with copies of row 0): matmul kernels
        # are then chosen identically for every slot, so a slot's numbers do not depend on how
        # many neighbours it has, and a seeded request is bit-identical alone or batched
        pad = -n % self.chunk
        z_H_in, z_L_in, x_in, seeds_in, steps_in, sigma_in = (
            torch.cat([t, t[:1].expand(pad, *t.shape[1:])]) if pad else t
            for t in (z_H, z_L, x, batch.seeds, batch.steps, batch.noise)
        )
        total_rows = n + pad
        new_H = torch.empty((total_rows, *z_H.shape[1:]), dtype=torch.float32)
        new_L = torch.empty((total_rows, *z_L.shape[1:]), dtype=torch.float32)
        sums = np.zeros((2, total_rows, 2), np.float64)  # [latent H/L, slot, (Σdiff², Σbase²)]
        # σ is cast to the latent dtype first, as the reference does
        noise = (seeds_in.numpy(), steps_in.numpy(), sigma_in.to(z_H.dtype).float().numpy())
        chunks = [slice(b, b + self.chunk) for b in range(0, total_rows, self.chunk)]

        def run(rows: slice) -> None:
            with torch.no_grad():  # grad mode is per thread: the pool's threads need it too
                self._run_chunk(rows, (z_H_in, z_L_in, x_in), noise, (new_H, new_L), sums)

        # one intra-op thread per chunk, whatever the process's setting: parallelism comes from the
        # chunks, and a chunk's summation order (so its numbers) never depends on the thread count
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            list(self._pool.map(run, chunks))
        finally:
            torch.set_num_threads(threads)
        new_H, new_L, sums = new_H[:n].to(z_H.dtype), new_L[:n].to(z_L.dtype), sums[:, :n]
        logits, q_halt = model.heads(new_H)
        pred, pred_change, logit_delta = reference.step_deltas(logits, batch.prev_logits, batch.prev_pred)
        total = torch.from_numpy(sums.sum(axis=0))
        residual = (total[:, 0].sqrt() / total[:, 1].sqrt().clamp_min(1e-12)).float()
        return StepOutput(
            z_H=new_H,
            z_L=new_L,
            logits=logits,
            pred=pred,
            q_halt=q_halt,
            residual=residual,
            pred_change=pred_change,
            logit_delta=logit_delta,
        )
