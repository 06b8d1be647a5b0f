"""AdamATan2 in plain PyTorch (eqr.md §4): Adam whose update is atan2(m̂, √v̂) instead of m̂/(√v̂+ε).

atan2 is bounded and scale-invariant, so no ε is needed and a single outlier gradient cannot
produce a huge step; the paper trains with it. The CUDA-only package is not needed.
"""

from __future__ import annotations

import torch


class AdamATan2(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.95), weight_decay: float = 0.1):
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m, v = state["m"], state["v"]
                p.mul_(1 - lr * wd)
                m.lerp_(p.grad, 1 - b1)
                v.lerp_(p.grad.square(), 1 - b2)
                p.sub_(lr * torch.atan2(m / (1 - b1**t), (v / (1 - b2**t)).sqrt()))


class EMA:
    """Exponential moving average of the parameters; evaluation and shipping use the shadow."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: p.detach().clone() for k, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for k, p in model.named_parameters():
            self.shadow[k].lerp_(p, 1 - self.decay)

    def copy_to(self, model: torch.nn.Module) -> None:
        with torch.no_grad():
            for k, p in model.named_parameters():
                p.copy_(self.shadow[k])
