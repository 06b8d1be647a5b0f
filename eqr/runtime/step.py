"""Pick the fastest whole-iteration step for a model: the :class:`~eqr.model.step.Stepper` a runner calls.

- CUDA: :class:`GraphStep` (Triton kernels replayed from CUDA graphs) unless ``graphs=False`` or
  ``EQR_CUDA_GRAPHS=0``; it falls back to the eager ``model.iterate`` by itself if capture fails.
- CPU, token-mixing (mlp_t) models: :class:`CpuStep` unless ``cpu_fast=False`` or
  ``EQR_CPU_FAST=0``. It is the fast path but agrees with the reference only to fp32 rounding;
  switch it off where bit-exact reproduction of ``model.iterate`` matters more than speed.
- anything else (attention models on CPU): the model itself, i.e. the reference ops.

torch.compile is not used: measured on the 2-core CPU it gains 7-15% on the reference step for
~22 s of compilation per shape, and CpuStep is several times faster than either.
"""

from __future__ import annotations

import os

from eqr.model.network import EqRNetwork
from eqr.model.step import StepBatch, Stepper


def _flag(value: bool | None, env: str) -> bool:
    return value if value is not None else os.environ.get(env, "1") != "0"


CUDA_SLOTS = 256  # a CUDA step costs about the same for any number of rows up to a few hundred


def preferred_slots(model: EqRNetwork) -> int:
    """The slot count that fills the model's device and no more: the engine's default capacity.

    On a CPU a step costs time in proportion to its rows once every core has work: the CPU fast
    step runs chunks of ``CHUNK_COLUMNS // hidden`` slots, one chunk per core at a time, so slots
    beyond cores × chunk add per-iteration latency for every live trajectory and no throughput
    (measured on 2 cores with the bundled model: 16 slots step in ~18 ms, 32 in ~36 ms, the same
    iterations per second). At least 8, so a breadth-8 request runs at once. On CUDA the step's
    cost is nearly flat in its rows, so the pool is wide.
    """
    device = next(model.parameters()).device
    if device.type == "cuda":
        return CUDA_SLOTS
    from eqr.runtime.cpu_step import CHUNK_COLUMNS, available_cores

    return max(8, available_cores() * max(1, CHUNK_COLUMNS // model.cfg.hidden_size))


def make_step(
    model: EqRNetwork, buffers: StepBatch, graphs: bool | None = None, cpu_fast: bool | None = None
) -> Stepper:
    """The step for ``model`` on its device, for batches that are prefixes of ``buffers`` (a slot pool's
    full-capacity tensors, :meth:`SlotPool.batch`), which the CUDA-graph step captures on."""
    device = next(model.parameters()).device
    if device.type == "cuda":
        if _flag(graphs, "EQR_CUDA_GRAPHS"):
            from eqr.runtime.graph_step import GraphStep

            return GraphStep(model, buffers)
        return model
    if device.type == "cpu" and model.cfg.mlp_t and _flag(cpu_fast, "EQR_CPU_FAST"):
        from eqr.runtime.cpu_step import CpuStep

        return CpuStep(model)
    return model
