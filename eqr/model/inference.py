"""Fixed-depth rollouts of many trajectories: the core of evaluation and offline solving.

A rollout runs every trajectory for ``depth`` iterations, recording at chosen depths what it
answers and the paper's convergence score, so one run to depth 64 also answers depth 1, 4 and 16.
What it answers is what the serving engine would: its prediction at that depth, or, once the
convergence rule held, the prediction and score it had then (the engine evicts it there; the
paper's protocol instead reads every trajectory at the full depth, which can differ when a
converged board later drifts). Trajectories are processed in fixed-size batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from eqr.kernels.step import make_step
from eqr.model.convergence import ConvergenceRule
from eqr.model.network import EqRNetwork, StepOutput

# called after every iteration with (iteration index t from 0, rows of the batch, the step's output)
Observer = Callable[[int, slice, StepOutput], None]


@dataclass
class Rollout:
    depths: list[int]
    preds: torch.Tensor  # [len(depths), N, S] token ids
    scores: torch.Tensor  # [len(depths), N] mean logit change over the last `score_window` steps (lower = settled)
    converged_at: torch.Tensor  # [N] iteration at which the answer it converged on appeared (depth+1 if never)
    detected_at: torch.Tensor  # [N] iteration at which the convergence rule held (depth+1 if never): its cost


def rollout(
    model: EqRNetwork,
    tokens: torch.Tensor,
    seeds: torch.Tensor,
    depth: int,
    noise: float,
    snapshots: Sequence[int] | None = None,
    rule: ConvergenceRule | None = None,
    batch_size: int = 256,
    progress: bool = False,
    observe: Observer | None = None,
    until_converged: bool = False,
) -> Rollout:
    """Run ``tokens`` [N, S] (one row per trajectory, seeds [N]) for ``depth`` iterations.

    ``observe`` sees every iteration's output, for studies that need the whole trajectory.
    ``until_converged``: stop a batch once all its trajectories converged (their answers are frozen
    then, so every later snapshot holds the same), as offline solving does.
    """
    rule = rule or ConvergenceRule()
    depths = sorted(set(snapshots or [depth]))
    if depths[-1] > depth or depths[0] < 1:
        raise ValueError("snapshot depths must lie in 1..depth")
    n, s = tokens.shape
    device = next(model.parameters()).device
    preds = torch.zeros(len(depths), n, s, dtype=torch.long)
    scores = torch.full((len(depths), n), float("inf"))
    converged_at = torch.full((n,), depth + 1, dtype=torch.long)
    detected_at = torch.full((n,), depth + 1, dtype=torch.long)
    step = make_step(model, batch_size)  # the fastest step for the device (CPU fast path, CUDA graphs)
    bar = tqdm(total=n * depth, desc="rollout", unit="it", disable=not progress)
    for start in range(0, n, batch_size):
        tok = tokens[start : start + batch_size].to(device)
        sd = seeds[start : start + batch_size].to(device)
        b = tok.shape[0]
        z_H, z_L = model.initial_state(sd)
        sigma = torch.full((b,), noise, device=device)
        prev_logits = torch.zeros(b, s, model.cfg.vocab_size, device=device)
        prev_pred = torch.full((b, s), -1, dtype=torch.long, device=device)
        streak = torch.zeros(b, dtype=torch.long, device=device)
        changed = torch.zeros(b, dtype=torch.long, device=device)
        deltas: list[torch.Tensor] = []
        conv = torch.full((b,), depth + 1, dtype=torch.long, device=device)
        detected = conv.clone()
        answer = prev_pred.clone()  # frozen once converged: what the engine answers when it evicts
        score = torch.full((b,), float("inf"), device=device)
        for t in range(depth):
            steps = torch.full((b,), t, dtype=torch.long, device=device)
            out = step.iterate(z_H, z_L, tok, sd, steps, sigma, prev_logits, prev_pred)
            z_H, z_L, prev_logits, prev_pred = out.z_H, out.z_L, out.logits, out.pred
            if observe is not None:
                observe(t, slice(start, start + b), out)
            changed = rule.update_changed_at(changed, out.pred_change, t + 1)
            running = detected > depth
            if t > 0:
                deltas.append(out.logit_delta)
                streak = rule.update_streak(streak, out.pred_change, out.residual)
                score = torch.where(running, torch.stack(deltas[-rule.score_window :]).mean(0), score)
                now = running & rule.converged(streak)
                detected = torch.where(now, t + 1, detected)
                conv = torch.where(now, changed, conv)
            answer = torch.where(running[:, None], out.pred, answer)
            done = until_converged and bool((detected <= depth).all())
            for k, d in enumerate(depths):  # this iteration's snapshot; once done, every later one (frozen)
                if d == t + 1 or (done and d > t + 1):
                    preds[k, start : start + b] = answer.cpu()
                    scores[k, start : start + b] = score.cpu()
            bar.update(b)
            if done:
                break
        converged_at[start : start + b] = conv.cpu()
        detected_at[start : start + b] = detected.cpu()
    bar.close()
    return Rollout(depths=depths, preds=preds, scores=scores, converged_at=converged_at, detected_at=detected_at)
