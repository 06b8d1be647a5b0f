"""Which convergence rule should a model serve with? Accuracy against iterations run, window × tol.

    python benchmarks/convergence_rule.py [--model DIR] [--data F.csv ...] [--depth 64]
        [--windows 1,2,3] [--tols 0.02,0.05,0.1,0.2,inf] [--limit N] [--plot convergence_rule.png]

The rule (``eqr.model.convergence``) decides when the engine evicts a trajectory: its board unchanged
for ``window`` iterations with a relative latent residual under ``tol``. A loose rule frees slots
sooner; too loose a rule answers before the board is right. One rollout per file records, for every
trajectory and iteration, whether the board changed, the residual and whether the board is the
solution. Each rule is then replayed on those records: a trajectory leaves at the first iteration
the rule holds (else at ``--depth``) and answers its board there. Per rule and file: exact accuracy
of those answers, answers *lost* (right at ``--depth`` but wrong when the rule let go), mean
iterations run, and that against the model's current rule. One trajectory per puzzle: breadth adds
accuracy through aggregation, not to this trade-off. Writes a PNG of accuracy against iterations.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from puzzle_sets import BUNDLED, SHARED, shown
from tqdm import tqdm

from eqr.kernels import rng
from eqr.model.bundled import default_model_dir
from eqr.model.checkpoint import load_model
from eqr.model.convergence import ConvergenceRule
from eqr.model.step import fresh_batch
from eqr.model.tasks.sudoku import SudokuTask
from eqr.offline.solve import offline_engine
from eqr.runtime.step import make_step

SETS = ("easy50.csv", "printable30.csv", "printable25.csv", "top95.csv")


def default_data() -> list[Path]:
    """The public sets where this project's machines keep them, else the small copies in the repo."""
    shared = [SHARED / name for name in SETS if (SHARED / name).exists()]
    return shared or sorted(BUNDLED.glob("*.csv"))


def record(model, path: Path, depth: int, noise: float, limit: int | None) -> dict[str, torch.Tensor]:
    """Per iteration and trajectory [depth, N]: board changed, residual, board is the solution."""
    puzzles, solutions = SudokuTask().read_set(path)
    tokens, labels = torch.from_numpy(puzzles[:limit]), torch.from_numpy(solutions[:limit])
    n = len(tokens)
    changed = torch.zeros(depth, n, dtype=torch.bool)
    residual = torch.zeros(depth, n)
    right = torch.zeros(depth, n, dtype=torch.bool)

    # every trajectory runs the whole depth (replay() judges the rules), seeded as `eqr eval --seed 0`
    seeds = torch.tensor([rng.trajectory_seed(0, rng.puzzle_key(row), 0) for row in tokens.numpy()])
    for start in range(0, n, 256):
        rows = slice(start, min(start + 256, n))
        state = fresh_batch(model, tokens[rows], seeds[rows], noise)
        stepper = make_step(model, state)
        for t in tqdm(range(depth), desc=f"{path.name} {start}", leave=False):
            out = stepper.iterate(state)
            changed[t, rows] = out.pred_change.cpu() != 0
            residual[t, rows] = out.residual.float().cpu()
            right[t, rows] = (out.pred.cpu() == labels[rows]).all(dim=1)
            state = state.advanced(out)
    return {"changed": changed, "residual": residual, "right": right}


def replay(rec: dict[str, torch.Tensor], rule: ConvergenceRule) -> dict[str, float]:
    """When ``rule`` lets each trajectory go, and what it answered then (as the rollout and engine count)."""
    changed, residual, right = rec["changed"], rec["residual"], rec["right"]
    depth, n = changed.shape
    streak = torch.zeros(n, dtype=torch.long)
    leave = torch.full((n,), depth)
    for t in range(1, depth):  # iteration 1 has no previous board to compare with
        streak = rule.update_streak(streak, changed[t].long(), residual[t])
        leave = torch.where((leave == depth) & rule.converged(streak), t + 1, leave)
    answered = right[leave - 1, torch.arange(n)]
    run = leave.double().numpy()
    return {
        "accuracy": float(answered.float().mean()),
        "lost": int((right[-1] & ~answered).sum()),
        "mean_run": float(run.mean()),
        "p90_run": float(np.percentile(run, 90, method="inverted_cdf")),
    }


def plot(rows: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    files = list(dict.fromkeys(r["data"] for r in rows))
    windows = sorted({r["window"] for r in rows})
    fig = Figure(figsize=(4.5 * len(files), 4), layout="constrained")
    for ax, name in zip(fig.subplots(1, len(files), squeeze=False)[0], files, strict=True):
        for wi, window in enumerate(windows):
            pts = [r for r in rows if r["data"] == name and r["window"] == window]
            ax.plot([r["mean_run"] for r in pts], [r["accuracy"] for r in pts], "o-", color=f"C{wi}",
                    label=f"window {window}")  # fmt: skip
            for r in pts:
                ax.annotate(f"{r['tol']:g}", (r["mean_run"], r["accuracy"]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")  # fmt: skip
        current = [r for r in rows if r["data"] == name and r["current"]]
        ax.plot([r["mean_run"] for r in current], [r["accuracy"] for r in current], "k*", ms=12, label="current")
        ax.set_title(name)
        ax.set_xlabel("mean iterations run (labels: tol)")
        ax.set_ylabel("exact accuracy")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=default_model_dir())
    ap.add_argument("--data", type=Path, nargs="+", default=None, help="puzzle,solution CSVs (default: public sets)")
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--windows", default="1,2,3")
    ap.add_argument("--tols", default="0.02,0.05,0.1,0.2,inf")
    ap.add_argument("--limit", type=int, default=None, help="first N puzzles of each file")
    ap.add_argument("--plot", type=Path, default=Path("convergence_rule.png"))
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, meta = load_model(args.model)
    engine = offline_engine(model, SudokuTask(), meta)  # the model folder's defaults, as served
    defaults, current = engine.defaults, engine.rule
    rules = [ConvergenceRule(int(w), float(t)) for w in args.windows.split(",") for t in args.tols.split(",")]
    if current not in rules:
        rules.append(current)
    print(f"model {shown(args.model)}: noise {defaults.noise:g}, depth {args.depth}, "
          f"current rule window {current.window} tol {current.tol:g}")  # fmt: skip

    rows: list[dict] = []
    for path in args.data or default_data():
        rec = record(model, path, args.depth, defaults.noise, args.limit)
        base = replay(rec, current)["mean_run"]
        for rule in rules:
            rows.append({"data": path.name, "window": rule.window, "tol": rule.tol, "current": rule == current,
                         **replay(rec, rule)})  # fmt: skip
            rows[-1]["vs_current"] = rows[-1]["mean_run"] / base

    head = f"{'data':<16}{'window':>7}{'tol':>7}{'accuracy':>10}{'lost':>6}{'mean run':>10}{'p90 run':>9}"
    head += f"{'vs current':>12}"
    print(head)
    print("-" * len(head))
    for r in rows:
        mark = "  <- current" if r["current"] else ""
        print(f"{r['data']:<16}{r['window']:>7}{r['tol']:>7g}{r['accuracy']:>10.3f}{r['lost']:>6}{r['mean_run']:>10.2f}"
              f"{r['p90_run']:>9.0f}{r['vs_current']:>11.2f}x{mark}")  # fmt: skip
    plot(rows, args.plot)
    print(f"wrote {args.plot}")

    # the cheapest rule that loses no answer on any file, by iterations run over all files
    safe = [
        rule
        for rule in rules
        if all(r["lost"] == 0 for r in rows if (r["window"], r["tol"]) == (rule.window, rule.tol))
    ]
    cost = {
        rule: sum(r["mean_run"] for r in rows if (r["window"], r["tol"]) == (rule.window, rule.tol)) for rule in safe
    }
    if cost:
        best = min(cost, key=cost.get)
        ratio = cost[best] / sum(r["mean_run"] for r in rows if r["current"])
        tol = "inf" if math.isinf(best.tol) else f"{best.tol:g}"
        print(f"cheapest rule losing no answer: window {best.window} tol {tol}: iterations run vs current {ratio:.2f}x")
    else:
        print("every rule loses answers on some file")


if __name__ == "__main__":
    main()
