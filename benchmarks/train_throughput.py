"""Training throughput of a recipe: optimizer steps/s and rows/s of the trainer's own step.

    python benchmarks/train_throughput.py [--config configs/sudoku-paper.json] [--device cuda]
                                          [--seconds 60] [--hidden N] [--batch N] [--json PATH]

Times ``eqr.model.train.supervised_step`` (deep supervision: the whole iteration forward, gradients
through its last cycle, AdamATan2, the EMA, halting) on the recipe's model and batch size, exactly
as ``eqr train`` runs it. The rows are random tokens and labels, and halted rows are refilled with
random ones: the data does not change the speed, and the paper recipe's generated pools (millions
of puzzles) would take longer to build than the probe runs. ``--hidden`` and ``--batch`` shrink the
recipe for a dry run on a CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from eqr.model.network import EqRNetwork
from eqr.model.optim import EMA, AdamATan2
from eqr.model.train import Carry, RunConfig, supervised_step

ROOT = Path(__file__).resolve().parent.parent


def refill_randomly(model: EqRNetwork, carry: Carry, gen: torch.Generator) -> None:
    """Halted rows get random puzzles and labels and fresh latents, as the trainer's refill would."""
    idx = carry.halted.nonzero().squeeze(1)
    if idx.numel() == 0:
        return
    shape, vocab, dev = (idx.numel(), model.cfg.seq_len), model.cfg.vocab_size, carry.tokens.device
    carry.tokens[idx] = torch.randint(0, vocab, shape, generator=gen).to(dev)
    carry.labels[idx] = torch.randint(1, vocab, shape, generator=gen).to(dev)
    carry.z_H[idx], carry.z_L[idx] = model.initial_state(torch.randint(0, 2**62, (idx.numel(),), generator=gen).to(dev))
    carry.steps[idx] = 0
    carry.halted[idx] = False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "sudoku-paper.json")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seconds", type=float, default=60.0, help="timed steps run about this long")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--hidden", type=int, help="override the recipe's hidden size (dry runs)")
    parser.add_argument("--batch", type=int, help="override the recipe's batch size (dry runs)")
    parser.add_argument("--json", type=Path, help="also write the result as JSON")
    args = parser.parse_args()

    cfg = RunConfig.load(args.config)
    arch = cfg.arch if args.hidden is None else dataclasses.replace(cfg.arch, hidden_size=args.hidden)
    if args.hidden is not None and arch.puzzle_emb_ndim:
        arch = dataclasses.replace(arch, puzzle_emb_ndim=args.hidden)
    batch = args.batch or cfg.train.batch_size
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = EqRNetwork(arch).to(device).train()
    tc = cfg.train
    opt = AdamATan2(model.parameters(), lr=tc.lr, betas=(tc.beta1, tc.beta2), weight_decay=tc.weight_decay)
    ema = EMA(model, tc.ema_decay)
    carry = Carry(model, batch, device)
    gen = torch.Generator().manual_seed(0)
    sigma = arch.noise_scale

    def noise(call: int, z: torch.Tensor) -> torch.Tensor:
        return sigma * torch.randn_like(z)

    def step() -> float:
        refill_randomly(model, carry, gen)
        loss, _ = supervised_step(model, opt, ema, carry, noise, tc.halt_exploration_prob, gen)
        return loss.item()  # a host sync: the step's work is done when this returns

    params = sum(p.numel() for p in model.parameters())
    print(f"{cfg.name} on {device}: hidden {arch.hidden_size}, batch {batch}, {params / 1e6:.1f}M parameters, fp32")
    for _ in range(args.warmup):
        step()
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds or steps == 0:
        loss = step()
        steps += 1
    wall = time.perf_counter() - t0
    result = {
        "config": cfg.name,
        "device": str(device),
        "hidden": arch.hidden_size,
        "batch": batch,
        "parameters": params,
        "steps": steps,
        "seconds": wall,
        "steps_per_s": steps / wall,
        "rows_per_s": steps * batch / wall,
        "last_loss": loss,
    }
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    print(f"{steps} steps in {wall:.1f} s: {result['steps_per_s']:.2f} steps/s, {result['rows_per_s']:.0f} rows/s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
