"""Architecture configuration of an EqR network (eqr.md §1.2)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EqRConfig:
    """Everything needed to build the network; field names follow the paper's ``config.arch``."""

    vocab_size: int = 11
    seq_len: int = 81  # S_in, cells of the board
    hidden_size: int = 512
    num_heads: int = 8
    expansion: float = 4.0
    # the token-mixing MLP's own expansion (over positions); None: ``expansion``, as in the paper
    token_expansion: float | None = None
    multiple_of: int = 256  # SwiGLU inner width is rounded up to this (paper: 256)
    L_layers: int = 2
    H_cycles: int = 3
    L_cycles: int = 6
    mlp_t: bool = True  # token mixing by an MLP over positions (else attention)
    pos_encodings: str = "none"  # "rope" or "none" (only used by attention)
    puzzle_emb_ndim: int = 0
    puzzle_emb_len: int = 0
    lambda_: float = 0.95
    noise_scale: float = 0.01
    init_std: float = 1.0
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    halt_max_steps: int = 16  # training depth; also the default serving depth

    def __post_init__(self) -> None:
        if self.pos_encodings not in ("rope", "none"):
            raise ValueError(f"pos_encodings must be 'rope' or 'none', got {self.pos_encodings!r}")
        if not self.mlp_t and self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be divisible by num_heads for attention")
        if self.token_expansion is not None and self.token_expansion <= 0:
            raise ValueError(f"token_expansion must be positive, got {self.token_expansion}")
        if self.puzzle_emb_ndim > self.puzzle_emb_len * self.hidden_size:
            raise ValueError("puzzle_emb_ndim does not fit in puzzle_emb_len tokens")

    @property
    def seq_total(self) -> int:
        """S_total: board cells plus the puzzle-embedding prefix."""
        return self.seq_len + self.puzzle_emb_len

    @property
    def mixer_expansion(self) -> float:
        """The token-mixing MLP's expansion: its own, else the channel MLP's."""
        return self.expansion if self.token_expansion is None else self.token_expansion

    @property
    def blocks_per_step(self) -> int:
        return self.H_cycles * (self.L_cycles + 1) * self.L_layers

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EqRConfig:
        """Build from a dict, ignoring keys that are not architecture fields (e.g. a paper config)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
