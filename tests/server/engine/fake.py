"""A stand-in for EqRNetwork whose convergence each test controls, so iterations can be counted exactly.

The fake reads the puzzle: its first cell ``d`` sets the iteration at which the prediction settles
(``settle[d]``, default ``max(d, 1)``), and a given 9 in the second cell makes the step raise.
Before settling the prediction changes every iteration; after it, it is a fixed solved grid,
relabelled by the trajectory's variant ``seed % variants`` so siblings can disagree. With the
engine's window W a trajectory therefore converges at iteration ``settle + W``. The convergence
score (mean logit delta) of a settled variant-v trajectory is ``0.1 * (1 + v)``. The fake ignores the
givens; the engine's answers keep them (:func:`answered`).
"""

from __future__ import annotations

import time

import torch

from eqr.model.config import EqRConfig
from eqr.model.step import StepBatch, StepOutput
from eqr.server.engine import Engine

SOLUTION = [int(c) for c in "483921657967345821251876493548132976729564138136798245372689514814253769695417382"]
CFG = EqRConfig(hidden_size=8, num_heads=1, expansion=1.0, multiple_of=8, L_layers=1, H_cycles=1, L_cycles=1)
FAIL_MARK = 9  # a 9 in the second cell makes the fake raise


def puzzle(first: int = 0, fail: bool = False) -> list[int]:
    """The tokens of an 81-cell Sudoku job for the fake: ``first`` (a digit) picks the settling iteration."""
    digits = [0] * 81
    digits[0] = first
    digits[1] = FAIL_MARK if fail else 0
    return [d + 1 for d in digits]


def variant_answer(v: int) -> list[int]:
    """The answer (tokens) of a settled variant-``v`` trajectory: the solution with digits relabelled."""
    return [(d - 1 + v) % 9 + 2 for d in SOLUTION]


def answered(board: list[int], first: int) -> list[int]:
    """A fake board as the engine answers it for ``puzzle(first)``: a given first digit stays (answers
    keep the puzzle's givens whatever the model predicts there); blanks keep the board's digits."""
    return [first + 1, *board[1:]] if first else list(board)


def moving_board(iteration: int) -> list[int]:
    """The prediction (tokens) of an unsettled trajectory at ``iteration``: different every iteration."""
    return [(iteration + i) % 9 + 2 for i in range(81)]


class FakeModel:
    def __init__(self, settle: dict[int, int] | None = None, variants: int = 1, delay_s: float = 0.0) -> None:
        self.cfg = CFG
        table = [max(d, 1) for d in range(10)]
        for d, it in (settle or {}).items():
            table[d] = it
        self.settle = torch.tensor(table)
        self.variants = variants
        self.delay_s = delay_s
        self.rows = 0  # trajectory-iterations computed
        self.calls = 0
        self.answers = torch.tensor([variant_answer(v) for v in range(variants)])  # [variants, 81] token ids

    def initial_state(self, seeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(seeds.shape[0], 1, 1), torch.zeros(seeds.shape[0], 1, 1)

    def iterate(self, batch: StepBatch) -> StepOutput:
        tokens, seeds, steps = batch.tokens, batch.seeds, batch.steps
        self.calls += 1
        if (tokens[:, 1] == FAIL_MARK + 1).any():
            raise RuntimeError("fake model failure")
        if self.delay_s:
            time.sleep(self.delay_s)
        self.rows += tokens.shape[0]
        it = steps + 1
        variant = seeds % self.variants
        settled = it >= self.settle[tokens[:, 0] - 1]
        moving = (it[:, None] + torch.arange(81)) % 9 + 2
        pred = torch.where(settled[:, None], self.answers[variant], moving)
        logits = torch.nn.functional.one_hot(pred, self.cfg.vocab_size).float()
        return StepOutput(
            z_H=batch.z_H,
            z_L=batch.z_L,
            logits=logits,
            pred=pred,
            q_halt=torch.where(settled, 1.0, -1.0),
            residual=torch.where(settled, 0.0, 1.0),
            pred_change=(pred != batch.prev_pred).sum(dim=1),
            logit_delta=torch.where(settled, 0.1 * (1 + variant).float(), 1.0),
        )


def run_until_done(engine: Engine, futures, max_steps: int = 1000) -> int:
    """Step until every future resolves; return the steps taken."""
    for n in range(1, max_steps + 1):
        engine.step()
        if all(f.done() for f in futures):
            return n
    raise AssertionError(f"not done after {max_steps} steps")
