"""The GPU step: ``EqRNetwork.iterate`` captured in CUDA graphs over a fixed slot pool.

One iteration launches a few hundred small kernels (42 blocks for the paper's Sudoku model); at
serving batch sizes their launch overhead rivals their run time. A CUDA graph replays the whole
iteration with one launch. Graphs need fixed shapes and addresses, so the step owns static input
buffers sized for the pool and captures one graph per *bucket* of live rows (powers of two up to
the capacity), lazily, the first time a live count falls in it. A call copies the live rows in,
replays the bucket's graph and returns views of its static outputs. Rows past the live count
hold stale (finite) values: every op is row-independent, so they cost work but never leak into a
live row. Eviction and admission happen between calls, in the caller's own buffers.

The noise is drawn inside the update kernel from the seed/step tensors copied in before each
replay, so every replay draws that iteration's fresh numbers. Anything that prevents capture
(no CUDA, a CPU model, a failure while capturing) logs one warning and falls back to the eager
``model.iterate``, so callers never need to care.
"""

from __future__ import annotations

import dataclasses
import logging

import torch

from eqr.model.network import EqRNetwork, StepOutput

log = logging.getLogger(__name__)
_WARMUP = 2  # eager runs on a side stream before capture: compile the kernels, create cuBLAS handles


def buckets_for(capacity: int) -> list[int]:
    """Powers of two below ``capacity``, then ``capacity``: at most 2x padded work, log2 graphs."""
    sizes, b = [], 1
    while b < capacity:
        sizes.append(b)
        b *= 2
    return [*sizes, capacity]


class GraphStep:
    """A drop-in for ``EqRNetwork.iterate``; outputs are valid until the next call (copy them out)."""

    def __init__(self, model: EqRNetwork, capacity: int) -> None:
        self.model = model
        self.capacity = capacity
        self.buckets = buckets_for(capacity)
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, StepOutput]] = {}
        self._static: list[torch.Tensor] | None = None
        self._pool: object | None = None
        self.eager_reason: str | None = None
        device = next(model.parameters()).device
        if not torch.cuda.is_available():
            self._fall_back("CUDA is not available")
        elif device.type != "cuda":
            self._fall_back(f"the model is on {device}")

    def _fall_back(self, reason: str) -> None:
        self.eager_reason = reason
        self._graphs.clear()
        log.warning("CUDA graph step unavailable (%s); using the eager step", reason)

    def _capture(self, bucket: int) -> tuple[torch.cuda.CUDAGraph, StepOutput]:
        assert self._static is not None
        args = [buf[:bucket] for buf in self._static]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(_WARMUP):
                self.model.iterate(*args)
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            out = self.model.iterate(*args)
        return graph, out

    def iterate(
        self,
        z_H: torch.Tensor,
        z_L: torch.Tensor,
        tokens: torch.Tensor,
        seeds: torch.Tensor,
        steps: torch.Tensor,
        noise_scale: torch.Tensor,
        prev_logits: torch.Tensor,
        prev_pred: torch.Tensor,
    ) -> StepOutput:
        """Advance every slot by one iteration; see ``EqRNetwork.iterate``."""
        inputs = (z_H, z_L, tokens, seeds, steps, noise_scale, prev_logits, prev_pred)
        if self.eager_reason is not None:
            return self.model.iterate(*inputs)
        n = z_H.shape[0]
        if n > self.capacity:
            raise ValueError(f"{n} live slots exceed the graph pool's capacity {self.capacity}")
        if self._static is None:
            self._static = [torch.zeros((self.capacity, *t.shape[1:]), dtype=t.dtype, device=t.device) for t in inputs]
        for buf, t in zip(self._static, inputs, strict=True):
            buf[:n].copy_(t)
        bucket = next(b for b in self.buckets if b >= n)
        entry = self._graphs.get(bucket)
        if entry is None:
            try:
                entry = self._capture(bucket)
            except Exception as exc:  # any capture failure: serve eagerly rather than not at all
                self._fall_back(f"capture failed: {exc!r}")
                return self.model.iterate(*inputs)
            self._graphs[bucket] = entry
        graph, out = entry
        graph.replay()
        return StepOutput(**{f.name: getattr(out, f.name)[:n] for f in dataclasses.fields(out)})
