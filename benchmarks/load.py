"""Load and soak test: mixed Sudoku traffic against real deployments, every answer accounted for.

    python benchmarks/load.py [--mode serve|redis|both] [--requests 10000] [--concurrency 64] [--depth 16]
    python benchmarks/load.py --soak 600 [--mode ...]        # mixed load for 600 s, then check for leaks

Starts the deployment itself on loopback (``eqr serve``, or redis-server + ``eqr api`` + 2 workers;
see ``servers.py``), sends the load from ``--concurrency`` clients (one ``httpx.AsyncClient``), and
stops it. The load mixes difficulty (80% easy puzzles from easy50 + printable30, 20% hard ones from
top95; ``benchmarks/puzzles``) and the ways to ask: 80% ``/v1/solve``, 10% streamed solves, 5% async
jobs (submit, then poll), 5% batches of 4. Every operation is seeded.

What counts:

* **answered**: operations whose every puzzle came back with a result (``verified``,
  ``converged`` or ``max_iterations``); **429**: refusals, deliberate when ``--rate-limit`` is set (retried after
  ``Retry-After``, up to 10 times); **unexpected**: anything else (another status, a failed result,
  a broken connection, a timeout). **lost** = sent - answered - refused for good.
* **exactly once**: every result id is distinct, a job's result carries the job's id, and the
  engines' own count of finished requests (``eqr_requests_total``) grew by exactly the number of
  puzzles answered, so no accepted request was dropped or computed twice.
* **back to baseline**: after the load, nothing queued or in flight, no client connection left
  open on the API port (established or half-closed), and every eqr process holding at most
  ``POOL_SLACK`` sockets more than after the warm-up (a Redis connection pool keeps what it grew to).
* memory (RSS) and open sockets of every server process from ``/proc`` (Linux), after a warm-up
  and with the load generator's connections closed, at the start and at the end.

``--soak S`` runs the mix for ``S`` seconds after a warm-up of min(60, S/5) s, and also demands
that no eqr process grew its RSS by 10% or more. Redis's own memory and sockets are reported, not
judged: it holds every result for its TTL, and its sockets are the eqr processes' pools seen from
the other side. Finished results are kept 30 s (``EQR_JOB_TTL_S``), so the memory they hold levels
off during the warm-up. Exit status 0 when every check passed; ``--json`` writes the whole report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from servers import Deployment, distributed, embedded

DATA = Path(__file__).with_name("puzzles")  # not data/: .gitignore leaves out every data/
BUNDLED_MODEL = Path(__file__).resolve().parents[1] / "models" / "sudoku-small"
EASY, HARD = ("easy50.csv", "printable30.csv"), ("top95.csv",)
KINDS = (("solve", 0.80), ("stream", 0.10), ("job", 0.05), ("batch", 0.05))
BATCH = 4
FINAL = ("verified", "converged", "max_iterations")
REQUEST_TIMEOUT_S = 120.0
MAX_429_RETRIES = 10
JOB_POLL_S = 0.05
IDLE_TIMEOUT_S = 60.0
MAX_RSS_GROWTH = 0.10
POOL_SLACK = 2  # sockets a process may hold beyond its baseline: idle connections kept by a pool
SERVER_ENV = {"EQR_JOB_TTL_S": "30"}


# -- the load --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    kind: str
    puzzles: tuple[str, ...]
    seed: int


def read_puzzles(files: tuple[str, ...]) -> list[str]:
    """The puzzle column of ``puzzle,solution`` CSV files in ``benchmarks/puzzles``."""
    puzzles = []
    for name in files:
        with (DATA / name).open(newline="") as f:
            puzzles += [row[0] for row in csv.reader(f) if row]
    return puzzles


class Mix:
    """An endless, reproducible stream of operations: 80% easy puzzles, and the four kinds of call."""

    def __init__(self, seed: int) -> None:
        self.easy, self.hard = read_puzzles(EASY), read_puzzles(HARD)
        self.rnd = random.Random(seed)
        self.count = 0

    def puzzle(self) -> str:
        return self.rnd.choice(self.hard if self.rnd.random() < 0.2 else self.easy)

    def next(self) -> Op:
        kind = self.rnd.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
        self.count += 1
        puzzles = tuple(self.puzzle() for _ in range(BATCH if kind == "batch" else 1))
        return Op(kind, puzzles, seed=self.count)


@dataclass
class Tally:
    sent: int = 0
    answered: int = 0
    puzzles: int = 0  # puzzles answered (a batch answers several)
    refused: int = 0  # operations still refused (429) after every retry
    retries_429: int = 0
    unexpected: int = 0
    errors: Counter = field(default_factory=Counter)  # unexpected, by kind of failure
    ids: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    def fail(self, what: str) -> None:
        self.unexpected += 1
        self.errors[what[:160]] += 1

    @property
    def duplicate_ids(self) -> int:
        return sum(n - 1 for n in self.ids.values() if n > 1)

    @property
    def lost(self) -> int:
        return self.sent - self.answered - self.refused


class Refused(Exception):
    """429: retry after ``wait`` seconds."""

    def __init__(self, wait: float) -> None:
        self.wait = wait


def result_of(body: dict[str, Any], tally: Tally, job_id: str | None = None) -> None:
    """Check one result and count its id; raise ValueError when it is not a proper answer."""
    if body.get("status") not in FINAL or len(body.get("answer", "")) != 81:
        raise ValueError(f"result status {body.get('status')!r}: {body.get('error')}")
    if job_id is not None and body["id"] != job_id:
        raise ValueError(f"job {job_id} answered with the result of {body['id']}")
    tally.ids[body["id"]] += 1


def checked(r: httpx.Response, *ok: int) -> httpx.Response:
    if r.status_code == 429:
        raise Refused(float(r.headers.get("Retry-After", "1")))
    if r.status_code not in ok:
        raise ValueError(f"HTTP {r.status_code}: {r.text[:100]}")
    return r


async def call(client: httpx.AsyncClient, op: Op, depth: int, tally: Tally) -> int:
    """Run one operation to its answer; the number of puzzles answered."""
    params = {"depth": depth, "seed": op.seed}
    if op.kind == "solve":
        result_of(checked(await client.post("/v1/solve", json={"puzzle": op.puzzles[0], **params}), 200).json(), tally)
    elif op.kind == "batch":
        body = checked(await client.post("/v1/solve/batch", json={"puzzles": list(op.puzzles), **params}), 200).json()
        for item in body["results"]:
            if item["error"]:
                raise ValueError(f"batch item: {item['error']['code']}")
            result_of(item["result"], tally)
    elif op.kind == "job":
        job_id = checked(await client.post("/v1/jobs", json={"puzzle": op.puzzles[0], **params}), 202).json()["id"]
        while (view := checked(await client.get(f"/v1/jobs/{job_id}"), 200).json())["status"] != "done":
            await asyncio.sleep(JOB_POLL_S)
        result_of(view["result"], tally, job_id)
    else:
        body = {"puzzle": op.puzzles[0], "stream": True, "stream_every": 4, **params}
        async with client.stream("POST", "/v1/solve", json=body) as r:
            if r.status_code != 200:
                await r.aread()
            checked(r, 200)
            last = await last_event(r)
        if last is None or last[0] != "result":
            raise ValueError(f"stream ended with {last[0] if last else 'nothing'}")
        result_of(last[1], tally)
    return len(op.puzzles)


async def last_event(r: httpx.Response) -> tuple[str, dict] | None:
    event, last = "message", None
    async for line in r.aiter_lines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            last = (event, json.loads(line[5:]))
    return last


async def one(client: httpx.AsyncClient, op: Op, depth: int, tally: Tally) -> None:
    tally.sent += 1
    start = time.perf_counter()
    for attempt in range(MAX_429_RETRIES + 1):
        try:
            answered = await call(client, op, depth, tally)  # not `+= await`: that reads the total before awaiting
        except Refused as refused:
            if attempt == MAX_429_RETRIES:
                tally.refused += 1
                return
            tally.retries_429 += 1
            await asyncio.sleep(refused.wait)
            continue
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            tally.fail(f"{op.kind}: {type(exc).__name__}: {exc}")
            return
        tally.answered += 1
        tally.puzzles += answered
        tally.latencies.append(time.perf_counter() - start)
        return


async def drive(url: str, mix: Mix, depth: int, concurrency: int, *, count: int | None, seconds: float | None) -> dict:
    """``count`` operations, or as many as ``seconds`` allow, from ``concurrency`` clients."""
    tally = Tally()
    deadline = time.monotonic() + (seconds if seconds is not None else float("inf"))
    remaining = [count if count is not None else sys.maxsize]

    def take() -> Op | None:
        if remaining[0] <= 0 or time.monotonic() >= deadline:
            return None
        remaining[0] -= 1
        return mix.next()

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:

        async def worker() -> None:
            while (op := take()) is not None:
                await one(client, op, depth, tally)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {"tally": tally, "wall_s": wall}


# -- the servers, from outside ---------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sockets(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed while we looked
            count += os.readlink(fd).startswith("socket:")
    return count


def client_connections(port: int) -> int:
    """TCP connections to ``port`` the server still holds (established, or closed by the client only)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                count += int(local.rsplit(":", 1)[1], 16) == port and state in ("01", "08")  # ESTABLISHED, CLOSE_WAIT
    return count


def finished_requests(metrics_urls: list[str]) -> float:
    """The engines' ``eqr_requests_total``, summed over statuses and engines."""
    total = 0.0
    for url in metrics_urls:
        for line in httpx.get(url, timeout=10).text.splitlines():
            if line.startswith("eqr_requests_total{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


@dataclass
class Snapshot:
    rss_mb: dict[str, float]
    sockets: dict[str, int]
    queue_depth: int
    in_flight: int
    finished: float
    client_connections: int  # to the API port


def wait_idle(url: str, timeout_s: float = IDLE_TIMEOUT_S) -> dict:
    """Until the deployment reports nothing queued and nothing in flight; its last /readyz body."""
    deadline = time.monotonic() + timeout_s
    while True:
        ready = httpx.get(f"{url}/readyz", timeout=10).json()
        if (ready.get("queue_depth"), ready.get("in_flight")) == (0, 0) or time.monotonic() > deadline:
            return ready
        time.sleep(0.1)


def settled_connections(port: int, timeout_s: float = 10.0) -> int:
    """Client connections to ``port`` once closing ones had time to finish (a leak stays)."""
    deadline = time.monotonic() + timeout_s
    while (count := client_connections(port)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return count


def snapshot(deployment: Deployment) -> Snapshot:
    ready = wait_idle(deployment.url)
    time.sleep(1.0)  # let closed connections finish closing on the server side
    port = int(deployment.url.rsplit(":", 1)[1])
    return Snapshot(
        rss_mb={name: rss_mb(pid) for name, pid in deployment.pids.items()},
        sockets={name: sockets(pid) for name, pid in deployment.pids.items()},
        queue_depth=int(ready.get("queue_depth", -1)),
        in_flight=int(ready.get("in_flight", -1)),
        finished=finished_requests(deployment.metrics),
        client_connections=settled_connections(port),
    )


# -- one run ---------------------------------------------------------------------------------------


def percentile_ms(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run_mode(mode: str, args: argparse.Namespace, tmp: Path) -> dict:
    env = {**SERVER_ENV, **({"EQR_RATE_LIMIT_PER_S": str(args.rate_limit)} if args.rate_limit else {})}
    folder = tmp / mode
    folder.mkdir()
    if mode == "serve":
        deploy = embedded(args.model, args.slots, args.threads, folder, env)
        label = f"eqr serve ({args.slots} slots)"
    else:
        deploy = distributed(args.model, args.slots, args.threads, args.workers, folder, env)
        label = f"api + {args.workers} workers ({args.slots} slots each)"
    mix = Mix(args.seed)
    # warm-up (not counted): a fifth of the soak (at most a minute), or two operations per client
    warm_up = {"count": None, "seconds": min(60.0, args.soak / 5)} if args.soak else {"count": 2 * args.concurrency}
    measured = {"count": None, "seconds": args.soak} if args.soak else {"count": args.requests}
    with deploy as deployment:

        def run(count: int | None = None, seconds: float | None = None) -> dict:
            seconds = min(seconds or args.max_seconds, args.max_seconds)
            return asyncio.run(drive(deployment.url, mix, args.depth, args.concurrency, count=count, seconds=seconds))

        run(**warm_up)
        start = snapshot(deployment)
        load = run(**measured)
        end = snapshot(deployment)
    return report(mode, label, args, load, start, end)


def report(mode: str, label: str, args: argparse.Namespace, load: dict, start: Snapshot, end: Snapshot) -> dict:
    tally: Tally = load["tally"]
    engine_finished = end.finished - start.finished
    eqr_procs = [name for name in start.rss_mb if name != "redis"]
    growth = {name: (end.rss_mb[name] - start.rss_mb[name]) / start.rss_mb[name] for name in start.rss_mb}
    checks = {
        "no unexpected errors": tally.unexpected == 0,
        "nothing lost": tally.lost == 0,
        "every result id distinct": tally.duplicate_ids == 0 and len(tally.ids) == tally.puzzles,
        "engines finished exactly the puzzles answered": engine_finished == tally.puzzles,
        "idle at the end (queue 0, in flight 0)": (end.queue_depth, end.in_flight) == (0, 0),
        "every client connection closed": end.client_connections == 0,
        # a Redis connection pool may keep a connection or two more than it needed in the warm-up;
        # Redis's own sockets are those connections seen from the other side, so they are not judged twice
        f"eqr sockets back to the start (+{POOL_SLACK})": all(
            end.sockets[n] <= start.sockets[n] + POOL_SLACK for n in eqr_procs
        ),
    }
    if args.soak:
        checks[f"RSS growth under {MAX_RSS_GROWTH:.0%}"] = all(growth[n] < MAX_RSS_GROWTH for n in eqr_procs)
    lat = tally.latencies
    return {
        "mode": mode,
        "deployment": label,
        "soak_s": args.soak,
        "wall_s": load["wall_s"],
        "sent": tally.sent,
        "answered": tally.answered,
        "puzzles": tally.puzzles,
        "refused_429": tally.refused,
        "retries_429": tally.retries_429,
        "unexpected": tally.unexpected,
        "errors": dict(tally.errors.most_common(10)),
        "lost": tally.lost,
        "duplicate_ids": tally.duplicate_ids,
        "engine_finished": engine_finished,
        "ops_per_s": tally.answered / load["wall_s"],
        "puzzles_per_s": tally.puzzles / load["wall_s"],
        "p50_ms": percentile_ms(lat, 50),
        "p95_ms": percentile_ms(lat, 95),
        "p99_ms": percentile_ms(lat, 99),
        "start": asdict(start),
        "end": asdict(end),
        "rss_growth": growth,
        "checks": checks,
        "passed": all(checks.values()),
    }


def print_table(reports: list[dict]) -> None:
    head = "| deployment | sent | answered | puzzles | 429 | unexpected | lost | dup ids | engine finished |"
    head += " ops/s | p50 ms | p95 ms | p99 ms |"
    print(head)
    print("|" + " --- |" * (head.count("|") - 1))
    for r in reports:
        print(
            f"| {r['deployment']} | {r['sent']} | {r['answered']} | {r['puzzles']} | {r['refused_429']}"
            f" (+{r['retries_429']} retried) | {r['unexpected']} | {r['lost']} | {r['duplicate_ids']}"
            f" | {r['engine_finished']:.0f} | {r['ops_per_s']:.1f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f}"
            f" | {r['p99_ms']:.0f} |"
        )
    print("\n| deployment | process | RSS start MB | RSS end MB | growth | sockets start | sockets end |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in reports:
        for name, before in r["start"]["rss_mb"].items():
            after, growth = r["end"]["rss_mb"][name], r["rss_growth"][name]
            s0, s1 = r["start"]["sockets"][name], r["end"]["sockets"][name]
            print(f"| {r['deployment']} | {name} | {before:.0f} | {after:.0f} | {growth:+.1%} | {s0} | {s1} |")
    for r in reports:
        end = r["end"]
        print(
            f"\n{r['deployment']}: wall {r['wall_s']:.0f} s; at the end: in flight {end['in_flight']}, queue"
            f" {end['queue_depth']}, client connections {end['client_connections']}"
        )
        for name, ok in r["checks"].items():
            print(f"  [{'ok' if ok else 'FAIL'}] {name}")
        for what, n in r["errors"].items():
            print(f"  error x{n}: {what}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=["serve", "redis", "both"], default="both")
    ap.add_argument("--requests", type=int, default=10_000, help="operations to send (default 10000)")
    ap.add_argument("--soak", type=float, default=0.0, help="instead: mixed load for this many seconds")
    ap.add_argument("--concurrency", type=int, default=64, help="clients sending at once (default 64)")
    ap.add_argument("--depth", type=int, default=16, help="iteration budget of every request (default 16)")
    ap.add_argument("--model", type=Path, default=BUNDLED_MODEL, help="model folder (default: bundled)")
    ap.add_argument("--slots", type=int, default=64, help="slots of each engine (default 64)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each engine (default 1)")
    ap.add_argument("--workers", type=int, default=2, help="workers in redis mode (default 2)")
    ap.add_argument("--rate-limit", type=float, default=0.0, help="server rate limit per client, for deliberate 429s")
    ap.add_argument("--max-seconds", type=float, default=1800.0, help="stop sending after this long (default 1800)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write the full report here")
    args = ap.parse_args(argv)
    modes = ["serve", "redis"] if args.mode == "both" else [args.mode]
    what = f"{args.soak:.0f} s soak" if args.soak else f"{args.requests} operations"
    print(f"{what}, {args.concurrency} clients, depth {args.depth}, model {args.model.name}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="eqr-load-") as tmp:
        reports = [run_mode(mode, args, Path(tmp)) for mode in modes]
    print_table(reports)
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2, default=float))
    return 0 if all(r["passed"] for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
