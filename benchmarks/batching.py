"""Continuous vs static batching on a mixed Sudoku load (one command, prints a table).

    python benchmarks/batching.py [--model DIR] [--slots N] [--puzzles 128] [--depth 64]

Load: 80% easy puzzles (easy50 + printable30) and 20% hard ones (top95), shuffled, all
submitted at once, every puzzle seeded, depth 64, the model's inference noise.

- continuous: the Engine (its own thread) with ``--slots`` slots; a trajectory leaves its slot
  when it converges or uses its depth, and a queued one takes the slot in the same step.
- static: batches of ``--slots`` puzzles through the same step; a batch runs until every
  member has converged or used its depth, then the next batch starts.

Both modes run the very same trajectories (same seeds, noise, convergence rule), so their answers
must agree and only the scheduling differs. Easy latency is reported from slot to result (a
puzzle's service time: what head-of-line blocking inflates) and from submission (includes the
queue wait of an all-at-once burst); "alone" runs easy puzzles one at a time on an idle engine.
Engine overhead: ``Engine.step`` against the bare step it wraps on the same full pool, in
alternation so that load from other processes hits both alike.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from concurrent.futures import wait
from pathlib import Path

import numpy as np
import torch
from puzzle_sets import BUNDLED, SHARED
from stats import percentile

from eqr.kernels.rng import puzzle_key, trajectory_seed
from eqr.model.bundled import default_model_dir
from eqr.model.checkpoint import load_model
from eqr.model.convergence import ConvergenceRule
from eqr.model.step import fresh_batch
from eqr.model.tasks.sudoku import SudokuTask
from eqr.runtime.step import make_step, preferred_slots
from eqr.server.engine import Engine, EngineConfig, Job, SolveParams

DATA = SHARED if SHARED.is_dir() else BUNDLED
EASY = ("easy50.csv", "printable30.csv")
HARD = ("top95.csv",)


SUDOKU = SudokuTask()


def load_mix(n: int, data: Path, seed: int) -> list[tuple[list[int], bool]]:
    """``n`` puzzles, 80% easy and 20% hard, shuffled: (tokens, is_easy)."""
    rnd = random.Random(seed)
    easy = [p.tolist() for f in EASY for p in SUDOKU.read_set(data / f)[0]]
    hard = [p.tolist() for f in HARD for p in SUDOKU.read_set(data / f)[0]]
    n_hard = round(0.2 * n)
    if n - n_hard > len(easy) or n_hard > len(hard):
        raise SystemExit(
            f"--puzzles {n} needs {n - n_hard} easy and {n_hard} hard puzzles; the data has {len(easy)} and {len(hard)}"
        )
    mix = [(p, True) for p in rnd.sample(easy, n - n_hard)] + [(p, False) for p in rnd.sample(hard, n_hard)]
    rnd.shuffle(mix)
    return mix


class TimedStep:
    """A stepper that adds up the time spent in the model step, to tell it from the time around it."""

    def __init__(self, stepper) -> None:
        self.stepper, self.seconds = stepper, 0.0

    def iterate(self, batch):
        t0 = time.perf_counter()
        out = self.stepper.iterate(batch)
        self.seconds += time.perf_counter() - t0
        return out


def run_continuous(engine: Engine, mix, depth: int) -> dict:
    timed = engine.runner.stepper = TimedStep(engine.runner.stepper)
    t0 = time.perf_counter()
    futures = [engine.submit(Job(p, SolveParams(depth=depth, seed=i))) for i, (p, _) in enumerate(mix)]
    done_at = [0.0] * len(mix)
    for i, f in enumerate(futures):
        f.add_done_callback(lambda _f, i=i: done_at.__setitem__(i, time.perf_counter()))
    wait(futures)
    results = [f.result() for f in futures]
    wall = max(done_at) - t0
    return {
        "wall": wall,
        "answers": [r.answer for r in results],
        "slot_iters": sum(sum(r.iterations) for r in results),
        "service_ms": [r.compute_ms for r in results],
        "total_ms": [(d - t0) * 1000 for d in done_at],
        "step_s": timed.seconds,
    }


@torch.no_grad()
def run_static(model, mix, slots: int, depth: int, noise: float, rule: ConvergenceRule) -> dict:
    """Fill a batch, run every member until all are done, repeat: the baseline, on the same step
    implementation the engine uses (``make_step``), so the ratio measures batching alone."""
    answers, service, total, slot_iters, step_s, build_s = [], [], [], 0, 0.0, 0.0
    t0 = time.perf_counter()
    for start in range(0, len(mix), slots):
        batch = mix[start : start + slots]
        b, s = len(batch), model.cfg.seq_len
        tokens = torch.tensor([p for p, _ in batch])
        seeds = torch.tensor([trajectory_seed(start + i, puzzle_key(t), 0) for i, t in enumerate(tokens.numpy())])
        state = fresh_batch(model, tokens, seeds, noise)
        c0 = time.perf_counter()
        stepper = TimedStep(make_step(model, state))  # built per batch (a CUDA graph captures on its buffers)
        build_s += time.perf_counter() - c0  # not timed: the engine builds its step once, before serving
        streak = torch.zeros(b, dtype=torch.long)
        done = torch.zeros(b, dtype=torch.bool)
        answer = torch.zeros(b, s, dtype=torch.long)
        b0 = time.perf_counter()
        for t in range(depth):
            out = stepper.iterate(state)
            state = state.advanced(out)
            streak = rule.update_streak(streak, out.pred_change, out.residual)
            leaving = ~done & (rule.converged(streak) | (t + 1 == depth))
            answer[leaving] = out.pred[leaving]
            done |= leaving
            if done.all():
                break
        b1 = time.perf_counter()
        slot_iters += b * int(state.steps[0])
        step_s += stepper.seconds
        answers += answer.tolist()
        service += [(b1 - b0) * 1000] * b
        total += [(b1 - t0 - build_s) * 1000] * b
    return {
        "wall": time.perf_counter() - t0 - build_s,
        "answers": answers,
        "slot_iters": slot_iters,
        "service_ms": service,
        "total_ms": total,
        "step_s": step_s,
    }


def run_alone(engine: Engine, mix, indices: list[int], depth: int) -> list[float]:
    """Puzzles ``indices`` of the mix one at a time on an idle engine, with their mix seeds (so the
    very same trajectories): submit→result latency (ms)."""
    latencies = []
    for i in indices:
        t0 = time.perf_counter()
        engine.submit(Job(mix[i][0], SolveParams(depth=depth, seed=i))).result()
        latencies.append((time.perf_counter() - t0) * 1000)
    return latencies


def measure_overhead(model, meta, mix, slots: int, depth: int, rounds: int) -> tuple[float, float, float]:
    """Engine.step against the bare model.iterate on the same full pool, alternated (and in
    alternating order) so load from other processes hits both alike: the median step and bare
    times (s) and the median of the per-pair ratios."""
    engine = Engine(
        model,
        EngineConfig(slots=slots, max_queue=4 * slots, max_depth=depth),
        task=SUDOKU,
        defaults=meta.get("inference"),
    )
    hard = [p for p, easy in mix if not easy] or [p for p, _ in mix]
    for i in range(4 * slots):  # enough queued work to keep the pool full
        engine.submit(Job(hard[i % len(hard)], SolveParams(depth=depth, seed=i)))
    engine.step()
    p = engine.pool

    def bare() -> float:
        n = p.live
        t0 = time.perf_counter()
        engine.runner.stepper.iterate(p.batch(n))
        return time.perf_counter() - t0

    def step() -> float:
        t0 = time.perf_counter()
        engine.step()
        return time.perf_counter() - t0

    pairs = [(step(), bare()) if r % 2 else tuple(reversed((bare(), step()))) for r in range(rounds)]
    engine.stop()
    step_s, bare_s = statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs)
    return step_s, bare_s, statistics.median(a / b for a, b in pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=default_model_dir(), help="model folder (default: bundled)")
    ap.add_argument(
        "--slots", type=int, default=None, help="slot count, the same for both modes (default: the server's)"
    )
    ap.add_argument("--puzzles", type=int, default=128, help="puzzles in the mixed load")
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--alone", type=int, default=0, help="easy puzzles timed alone (default: all of the mix's)")
    ap.add_argument("--rounds", type=int, default=20, help="step pairs for the overhead measurement")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 suits a busy 2-core CPU)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--seed", type=int, default=0, help="shuffle seed of the load")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    model, meta = load_model(args.model)
    args.slots = args.slots or preferred_slots(model)
    inference = meta.get("inference") or {}
    mix = load_mix(args.puzzles, args.data, args.seed)
    config = EngineConfig(slots=args.slots, max_queue=len(mix), max_depth=args.depth, threads=args.threads)
    engine = Engine(model, config, task=SUDOKU, defaults=inference)
    noise, rule = engine.defaults.noise, engine.rule
    n_easy = sum(e for _, e in mix)
    steps = meta.get("training", {}).get("steps", "?")
    print(
        f"model {args.model} (training step {steps}), slots {args.slots}, depth {args.depth}, noise {noise:g}, "
        f"threads {args.threads}; {len(mix)} puzzles ({n_easy} easy, {len(mix) - n_easy} hard) from {args.data}"
    )
    # latency ratios compare a lone slot with a full pool: on a CPU that other processes keep busy the
    # pool loses its parallelism first, so say how busy the machine was
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (run it on an idle machine)")

    engine.start()
    cont = run_continuous(engine, mix, args.depth)
    easy = [i for i, (_, e) in enumerate(mix) if e]
    alone = run_alone(engine, mix, easy[: args.alone or None], args.depth)
    engine.stop()
    static = run_static(model, mix, args.slots, args.depth, noise, rule)
    step_s, bare_s, ratio = measure_overhead(model, meta, mix, args.slots, args.depth, args.rounds)

    header = (
        f"{'mode':<12}{'puzzles/s':>10}{'wall s':>9}{'slot-iters':>12}{'solved':>8}"
        f"{'easy p50 ms':>13}{'easy p99 ms':>13}{'easy p99 ms':>13}"
    )
    print()
    print(f"{'':<64}{'(slot→result)':>26}{'(submitted)':>13}")
    print(header)
    print("-" * len(header))
    for name, r in (("continuous", cont), ("static", static)):
        pairs = zip(mix, r["answers"], strict=True)
        solved = sum(SUDOKU.verify(np.asarray(p), np.asarray(a)) for (p, _), a in pairs) / len(mix)
        svc = [r["service_ms"][i] for i in easy]
        tot = [r["total_ms"][i] for i in easy]
        print(
            f"{name:<12}{len(mix) / r['wall']:>10.2f}{r['wall']:>9.1f}{r['slot_iters']:>12}{solved:>8.0%}"
            f"{percentile(svc, 50):>13.0f}{percentile(svc, 99):>13.0f}{percentile(tot, 99):>13.0f}"
        )
    print(
        f"{'easy alone':<12}{'':>10}{'':>9}{'':>12}{'':>8}{percentile(alone, 50):>13.0f}{percentile(alone, 99):>13.0f}"
    )
    print()
    same = sum(a == b for a, b in zip(cont["answers"], static["answers"], strict=True))
    print(f"same answers in both modes: {same}/{len(mix)}")
    print(f"work static/continuous (slot-iterations, timing-free): {static['slot_iters'] / cont['slot_iters']:.2f}x")
    easy_p99 = percentile([cont["service_ms"][i] for i in easy], 99)
    print(f"easy p99 (slot→result) mixed/alone: {easy_p99 / percentile(alone, 99):.2f}x")
    print(
        f"engine step at full occupancy {step_s * 1000:.1f} ms vs bare step {bare_s * 1000:.1f} ms "
        f"(medians of {args.rounds} pairs): overhead {100 * (ratio - 1):+.1f}%"
    )
    for name, r in (("continuous", cont), ("static", static)):
        share = r["step_s"] / r["wall"]
        print(f"{name}: {r['step_s']:.1f} s of {r['wall']:.1f} s wall in the model step ({share:.0%})")
    print(f"continuous/static: {static['wall'] / cont['wall']:.2f}x")
    # how much of the work continuous batching saves becomes time saved (issue #20's goal: >= 85%)
    saved_time, saved_work = static["wall"] / cont["wall"], static["slot_iters"] / cont["slot_iters"]
    print(f"wall ratio / slot-iteration ratio: {saved_time / saved_work:.0%}")


if __name__ == "__main__":
    main()
