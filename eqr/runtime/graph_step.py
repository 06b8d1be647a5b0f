"""The GPU step: ``EqRNetwork.iterate`` captured in CUDA graphs over a fixed slot pool.

One iteration launches a few hundred small kernels (42 blocks for the paper's Sudoku model); at
serving batch sizes their launch overhead rivals their run time. A CUDA graph replays the whole
iteration with one launch. Graphs need fixed shapes and addresses: the slot pool's buffers never
move, so the step captures on them directly, one graph per *bucket* of live rows (powers of two
up to the capacity), lazily, the first time a live count falls in it. A call replays the bucket's
graph and returns views of its static outputs. Rows past the live count hold stale (finite)
values: every op is row-independent, so they cost work but never leak into a live row. Eviction
and admission happen between calls, in the pool's buffers.

The noise is drawn inside the update kernel from the pool's seed/step tensors as they are at each
replay, so every replay draws that iteration's fresh numbers. Anything that prevents capture
(no CUDA, a CPU model, a failure while capturing) logs one warning and falls back to the eager
``model.iterate``, so callers never need to care.
"""

from __future__ import annotations

import logging
import threading

import torch

from eqr.model.network import EqRNetwork
from eqr.model.step import StepBatch, StepOutput

log = logging.getLogger(__name__)
_CAPTURE_LOCK = threading.Lock()  # one capture at a time in the process (see GraphStep._capture)
_WARMUP = 2  # eager runs on a side stream before capture: compile the kernels, create cuBLAS handles


def buckets_for(capacity: int) -> list[int]:
    """Powers of two below ``capacity``, then ``capacity``: at most 2x padded work, log2 graphs."""
    sizes, b = [], 1
    while b < capacity:
        sizes.append(b)
        b *= 2
    return [*sizes, capacity]


class GraphStep:
    """A :class:`~eqr.model.step.Stepper` replaying CUDA graphs captured on a slot pool's own buffers.

    ``buffers`` are the pool's full-capacity tensors (:meth:`SlotPool.batch`); a graph for bucket b
    is captured on their first b rows, so a call whose batch is a prefix of them replays with no
    copy in. A batch in other tensors is copied into them first (tests, benchmarks). Outputs are
    valid until the next call (copy them out).
    """

    def __init__(self, model: EqRNetwork, buffers: StepBatch) -> None:
        self.model = model
        self.buffers = buffers
        self.capacity = buffers.size
        self.buckets = buckets_for(self.capacity)
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, StepOutput]] = {}
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
        batch = self.buffers.rows(bucket)
        # Several engines (one per served model, each on its own thread) share a GPU. In CUDA's default
        # (global) capture mode, another thread's synchronising call during a capture fails that call
        # and invalidates the capture: seen on an H200 serving both bundled models, where every graph
        # fell back to the eager step. So captures take turns, and each is thread-local: other
        # threads' steps go on meanwhile.
        with _CAPTURE_LOCK:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(_WARMUP):
                    self.model.iterate(batch)
            torch.cuda.current_stream().wait_stream(side)
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
                out = self.model.iterate(batch)
        return graph, out

    def _is_prefix_of_buffers(self, batch: StepBatch) -> bool:
        return all(t.data_ptr() == b.data_ptr() for t, b in zip(batch.tensors(), self.buffers.tensors(), strict=True))

    def iterate(self, batch: StepBatch) -> StepOutput:
        """Advance every slot by one iteration; see ``EqRNetwork.iterate``."""
        if self.eager_reason is not None:
            return self.model.iterate(batch)
        n = batch.size
        if n > self.capacity:
            raise ValueError(f"{n} live slots exceed the graph pool's capacity {self.capacity}")
        if not self._is_prefix_of_buffers(batch):
            for buf, t in zip(self.buffers.rows(n).tensors(), batch.tensors(), strict=True):
                buf.copy_(t)
        bucket = next(b for b in self.buckets if b >= n)
        entry = self._graphs.get(bucket)
        if entry is None:
            try:
                entry = self._capture(bucket)
            except Exception as exc:  # any capture failure: serve eagerly rather than not at all
                self._fall_back(f"capture failed: {exc!r}")
                return self.model.iterate(self.buffers.rows(n))
            self._graphs[bucket] = entry
        graph, out = entry
        graph.replay()
        return out.rows(n)
