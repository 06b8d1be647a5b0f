"""Training losses (eqr.md §4): stablemax cross-entropy and the q-halt loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def stablemax_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """log of s(x)/Σs(x) with s(x) = x+1 (x ≥ 0), 1/(1-x) (x < 0), in float64.

    Stablemax grows linearly instead of exponentially, which avoids the softmax collapse that
    stalls training once logits get large (the paper and TRM use it for Sudoku).
    """
    x = logits.double()
    s = torch.where(x >= 0, x + 1, 1 / (1 - x + 1e-30))
    return torch.log(s / s.sum(dim=-1, keepdim=True))


def supervision_loss(
    logits: torch.Tensor, q_halt: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """Per-row mean stablemax CE summed over the batch, plus 0.5 × BCE of q_halt vs "board correct".

    Returns the loss divided by the batch size, detached statistics for the progress bar, and which
    rows' boards are correct [B] (the halting target; training's hard-example replay keeps the others).
    """
    logp = stablemax_log_probs(logits)
    ce = -logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1).mean(dim=1)  # [B]
    with torch.no_grad():
        correct_cells = logits.argmax(-1) == labels
        solved = correct_cells.all(dim=1)
    q_loss = F.binary_cross_entropy_with_logits(q_halt, solved.to(q_halt.dtype), reduction="sum")
    batch = labels.shape[0]
    loss = (ce.sum() + 0.5 * q_loss) / batch
    stats = {
        "lm_loss": float(ce.detach().mean()),
        "q_loss": float(q_loss.detach()) / batch,
        "cell_acc": float(correct_cells.float().mean()),
        "exact_acc": float(solved.float().mean()),
    }
    return loss.float(), stats, solved
