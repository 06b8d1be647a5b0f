"""Exact matmul FLOP count of one EqR iteration, from the configuration.

Used to report a step's achieved GFLOP/s against the machine's matmul rate; elementwise work
(norms, activations, noise) is deliberately not counted, so the rate says how close the step
comes to spending all its time in matrix multiplication.
"""

from __future__ import annotations

from eqr.model.config import EqRConfig
from eqr.model.network import swiglu_width


def block_flops(cfg: EqRConfig) -> int:
    """Matmul FLOPs (2 per multiply-add) of one ReasoningBlock on one slot."""
    s, d = cfg.seq_total, cfg.hidden_size
    inner = swiglu_width(d, cfg.expansion, cfg.multiple_of)
    flops = 2 * s * d * 2 * inner + 2 * s * inner * d  # channel SwiGLU: gate_up, down
    if cfg.mlp_t:
        inner_t = swiglu_width(s, cfg.expansion, cfg.multiple_of)
        flops += 2 * 2 * inner_t * s * d + 2 * s * inner_t * d  # token mixing over positions
    else:
        flops += 2 * s * d * 3 * d + 2 * s * d * d  # qkv and output projections
        flops += 2 * 2 * s * s * d  # scores QK^T and the weighted sum PV, over all heads
    return flops


def iteration_flops(cfg: EqRConfig, batch: int) -> int:
    """Matmul FLOPs of one ``EqRNetwork.iterate`` on ``batch`` slots (all G calls, then the heads)."""
    heads = 2 * cfg.seq_len * cfg.hidden_size * cfg.vocab_size + 2 * cfg.hidden_size * 2
    return batch * (cfg.blocks_per_step * block_flops(cfg) + heads)
