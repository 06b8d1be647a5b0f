"""Verified mode against fixed breadth, over HTTP: accuracy and iterations per puzzle on one set.

Starts ``eqr serve`` on the bundled models (real uvicorn, the SDK as the client), sends every puzzle of
the set under each policy, and prints a table measured side by side in one run:

- ``fixed D × B``: pure EqR, breadth B with the model's aggregate rule (the bundled Sudoku model votes);
- ``on demand D × ≤B, quorum Q``: breadth B as a cap; Q trajectories start, more join only while the
  finished ones cannot agree (pure EqR, no verifier);
- ``verified D, budget N``: one trajectory at a time; an answer that fails the rules is restarted from a
  fresh latent until one verifies or N iterations are spent; ``--restart full,renoise`` adds the same
  budgets with restarts that keep the failed trajectory's latents and re-noise only its cells in conflict
  (``verified D, budget N, renoise``), side by side; ``--stuck-after 8`` adds each of them ending early once
  one wrong answer has failed 8 times (``..., stuck after 8``; the other rows spend their whole budget, whatever
  stop the model folder sets by default); ``--halt convergence,q_halt`` adds them with
  each trajectory ended by the learned halting head (``q_halt > 0``) instead of the convergence rule, so the
  verifier sees an answer as soon as the model says it is done (``..., learned halting``).

Iterations per puzzle are every trajectory's iterations summed (restarts included): what a puzzle cost
the server, and what does not drift with the machine's load. One command:
``python benchmarks/verified.py --data top95.csv --budget 1000,2000``.

``--curve 500,1000,...,16000`` adds accuracy against budget in verified mode from one run at the largest
budget: restarts run one at a time in a fixed seed sequence whatever the budget, so a puzzle verified
after I iterations at budget N is verified at every budget >= I and costs min(I, b) at budget b
(``--plot`` draws it as a PNG).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from puzzle_sets import BUNDLED, SHARED, read_set, shown
from servers import embedded

from eqr.model.bundled import BUNDLED_MODEL
from eqr_client import Client


def run(client: Client, puzzles: list[str], solutions: list[str], concurrency: int, **options) -> dict:
    t0 = time.perf_counter()
    results = client.solve_many(puzzles, concurrency=concurrency, **options)
    wall = time.perf_counter() - t0
    right = [r.answer == s for r, s in zip(results, solutions, strict=True)]
    return {
        "per_puzzle": [(sum(r.iterations), bool(r.verified), ok) for r, ok in zip(results, right, strict=True)],
        "exact": sum(right) / len(right),
        "iterations": sum(sum(r.iterations) for r in results) / len(results),
        "verified": sum(bool(r.verified) for r in results) / len(results),
        "restarts": sum(r.restarts for r in results) / len(results),
        "wrong_but_verified": sum(bool(r.verified) and not ok for r, ok in zip(results, right, strict=True)),
        "wall": wall,
    }


def budget_curve(per_puzzle: list[tuple[int, bool, bool]], budgets: list[int]) -> list[dict]:
    """Verified mode at each smaller budget, read off one run at the largest: a puzzle counts as answered at
    budget b when it verified within b iterations, and costs min(its iterations, b) there."""
    n = len(per_puzzle)
    rows = []
    for b in budgets:
        hit = [(it, ok) for it, verified, ok in per_puzzle if verified and it <= b]
        rows.append(
            {
                "budget": b,
                "exact": sum(ok for _, ok in hit) / n,
                "verified": len(hit) / n,
                "iterations": sum(min(it, b) for it, _, _ in per_puzzle) / n,
                "wrong_but_verified": sum(not ok for _, ok in hit),
            }
        )
    return rows


def plot_curve(rows: list[dict], title: str, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot([r["iterations"] for r in rows], [r["exact"] for r in rows], "o-")
    for r in rows:
        ax.annotate(str(r["budget"]), (r["iterations"], r["exact"]), fontsize=7, xytext=(3, -9),
                    textcoords="offset points")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("mean iterations per puzzle (labels: budget)")
    ax.set_ylabel("exact (= verified) accuracy")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=BUNDLED_MODEL, help="a Sudoku model folder (default: bundled)")
    ap.add_argument("--data", default="top95.csv", help="a puzzle,solution CSV in shared/ or benchmarks/puzzles/")
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--breadth", default="1,16", help="fixed breadths to compare")
    ap.add_argument("--budget", default="1000,2000", help="verified mode's budgets (iterations per puzzle)")
    ap.add_argument("--restart", default="full", help="verified mode's restart policies to compare (full,renoise)")
    ap.add_argument("--stuck-after", default="", help="verified mode's early stops to compare (e.g. 8)")
    ap.add_argument("--halt", default="convergence", help="verified mode's halting rules (convergence,q_halt)")
    ap.add_argument("--quorum", default="2,3", help="breadth on demand's quorums (cap: the widest --breadth)")
    ap.add_argument("--curve", default="", help="budgets of an accuracy-against-budget curve (one run at the largest)")
    ap.add_argument("--plot", type=Path, help="draw --curve as a PNG here")
    ap.add_argument("--limit", type=int, help="first N puzzles only")
    ap.add_argument("--timeout", type=float, default=600, help="seconds to wait for one answer (budget 16000: more)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--slots", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=16, help="puzzles in flight")
    args = ap.parse_args()
    path = SHARED / args.data if (SHARED / args.data).exists() else BUNDLED / args.data
    puzzles, solutions = read_set(path, args.limit)
    policies = [(f"fixed {args.depth} x {b}", {"breadth": int(b)}) for b in args.breadth.split(",")]
    cap = max(int(b) for b in args.breadth.split(","))
    policies += [
        (
            f"on demand {args.depth} x <={cap}, quorum {q}",
            {"breadth": cap, "breadth_mode": "on_demand", "quorum": int(q)},
        )
        for q in args.quorum.split(",")
        if q
    ]
    budgets = [int(n) for n in args.budget.split(",") if n]
    curve = sorted(int(n) for n in args.curve.split(",") if n)
    if curve and max(curve) not in budgets:
        budgets.append(max(curve))
    restarts = args.restart.split(",")
    stops = [None] + [int(k) for k in args.stuck_after.split(",") if k]
    halts = args.halt.split(",")
    verified = verified_policies(args.depth, budgets, restarts, stops, halts)
    policies += verified
    print(f"{len(puzzles)} puzzles of {shown(path)}, model {args.model.name}, depth {args.depth}, seed {args.seed}")
    rows = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        embedded(args.model, args.slots, args.threads, Path(tmp)) as d,
        Client(d.url, timeout=args.timeout) as client,
    ):
        for name, options in policies:
            r = run(client, puzzles, solutions, args.concurrency, depth=args.depth, seed=args.seed, **options)
            rows.append((name, r))
            print(f"  {name}: {r['exact']:.1%} in {r['wall']:.0f} s", flush=True)
    header = (
        f"{'policy':<42}{'exact':>8}{'iterations/puzzle':>19}{'verified':>10}{'restarts':>10}{'wrong+verified':>16}"
    )
    print()
    print(header)
    print("-" * len(header))
    for name, r in rows:
        print(
            f"{name:<42}{r['exact']:>8.1%}{r['iterations']:>19.0f}{r['verified']:>10.1%}{r['restarts']:>10.1f}"
            f"{r['wrong_but_verified']:>16}"
        )
    if curve:
        _, top = next(nr for nr in rows if nr[0] == verified_name(args.depth, max(curve), restarts[0], None, halts[0]))
        points = budget_curve(top["per_puzzle"], curve)
        print()
        print(f"{'budget':>8}{'exact':>8}{'iterations/puzzle':>19}{'verified':>10}{'wrong+verified':>16}")
        for p in points:
            print(
                f"{p['budget']:>8}{p['exact']:>8.1%}{p['iterations']:>19.0f}{p['verified']:>10.1%}"
                f"{p['wrong_but_verified']:>16}"
            )
        if args.plot:
            plot_curve(points, f"{shown(path)}: verified, depth {args.depth}, {len(puzzles)} puzzles", args.plot)
            print(f"curve drawn to {args.plot}")
        print()
    base_name, base = next(nr for nr in rows if nr[0] == f"fixed {args.depth} x {cap}")  # the widest fixed breadth
    adaptive = [nr for nr in rows if not nr[0].startswith("fixed")]
    for name, r in adaptive:
        print(comparison(name, r, base_name, base))
    for name, options in verified:  # each variant against the first restart and halting rules without a stop
        first = verified_name(args.depth, options["budget"], restarts[0], None, halts[0])
        if name != first:
            print(comparison(name, dict(rows)[name], first, dict(rows)[first]))


def verified_policies(
    depth: int, budgets: list[int], restarts: list[str], stops: list[int | None], halts: list[str]
) -> list[tuple[str, dict]]:
    """Verified mode's rows, (name, request options), every combination of halting rule, restart policy, stop
    and budget. A row without a stop spends its whole budget: no wrong answer can fail more than ``budget``
    times, so ``stuck_after`` budget + 1 overrides a stop the model folder sets by default (the bundled Sudoku
    folder's 16), and the row measures what its name says."""
    return [
        (
            verified_name(depth, n, mode, k, halt),
            {"verify": True, "budget": n, "restart": mode, "stuck_after": k or n + 1, "halt": halt},
        )
        for halt in halts
        for mode in restarts
        for k in stops
        for n in budgets
    ]


def comparison(name: str, r: dict, base_name: str, base: dict) -> str:
    """One ratio line: a policy's accuracy and cost against another's on the same puzzles."""
    return (
        f"{name} / {base_name}: accuracy {r['exact']:.1%} vs {base['exact']:.1%} "
        f"at {r['iterations'] / base['iterations']:.2f}x the iterations"
    )


def verified_name(
    depth: int, budget: int, restart: str, stuck_after: int | None = None, halt: str = "convergence"
) -> str:
    """A verified-mode row's name: the restart policy shows unless it is the default (full), the stop if any,
    and the halting rule unless it is the convergence rule."""
    name = f"verified {depth}, budget {budget}" + ("" if restart == "full" else f", {restart}")
    name += "" if stuck_after is None else f", stuck after {stuck_after}"
    return name + ("" if halt == "convergence" else ", learned halting")


if __name__ == "__main__":
    main()
