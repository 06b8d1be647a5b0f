"""The two deployments the benchmarks drive, as real processes on loopback: ``eqr serve`` alone, or
redis-server + ``eqr api`` + N ``eqr worker``. Shared by ``redis_mode.py`` and ``load.py``.

Each context manager yields a :class:`Deployment`: the API's URL and the pids worth watching (for
RSS and open sockets, read from ``/proc``, so Linux only). Processes stop with SIGTERM, then SIGKILL.
Redis runs as deployed (``appendonly yes``, ``appendfsync always``). Nothing here imports torch.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

CLI = [sys.executable, "-m", "eqr.server.cli"]
START_TIMEOUT_S = 120.0


@dataclass
class Deployment:
    url: str
    pids: dict[str, int] = field(default_factory=dict)  # name -> pid of each server process
    logs: dict[str, Path] = field(default_factory=dict)
    metrics: list[str] = field(default_factory=list)  # /metrics URLs of the processes that run engines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def process(args: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """A child process for the duration of the block, stopped with SIGTERM (then SIGKILL)."""
    with log.open("w") as out:
        environment = {**os.environ, "EQR_LOG_LEVEL": "warning", **(env or {})}
        proc = subprocess.Popen(args, stdout=out, stderr=out, env=environment)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_ok(url: str, proc: subprocess.Popen, log: Path, timeout: float = START_TIMEOUT_S) -> None:
    """Until ``url`` answers 200; exits with the process's log if it dies or the time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            sys.exit(f"{' '.join(map(str, proc.args[:5]))} exited:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"{url} not ready after {timeout:.0f} s:\n{log.read_text()}")
        time.sleep(0.2)


def engine_args(model: Path | None, slots: int | None, threads: int | None) -> list[str]:
    """The engine's flags; one left None keeps the server's default (no --model: every bundled model)."""
    flags = {"--model": model, "--slots": slots, "--threads": threads}
    return [arg for flag, value in flags.items() if value is not None for arg in (flag, str(value))]


@contextmanager
def embedded(
    model: Path | None, slots: int | None, threads: int | None, tmp: Path, env: dict[str, str] | None = None
) -> Iterator[Deployment]:
    """``eqr serve`` on a free port, ready (its log in ``tmp``)."""
    port, log = free_port(), tmp / "serve.log"
    with process([*CLI, "serve", "--port", str(port), *engine_args(model, slots, threads)], log, env) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_ok(f"{url}/readyz", proc, log)
        yield Deployment(url, {"serve": proc.pid}, {"serve": log}, [f"{url}/metrics"])


@contextmanager
def distributed(
    model: Path, slots: int, threads: int, workers: int, tmp: Path, env: dict[str, str] | None = None
) -> Iterator[Deployment]:
    """redis-server, ``eqr api`` and ``workers`` workers; ready once the API counts every worker's slots."""
    redis_server = shutil.which("redis-server") or sys.exit("redis-server not found: apt-get install -y redis-server")
    rport, aport = free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{rport}/0"
    url = f"http://127.0.0.1:{aport}"
    with ExitStack() as stack:
        persistence = ["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp)]
        redis = stack.enter_context(process([redis_server, "--port", str(rport), *persistence], tmp / "redis.log"))
        deployment = Deployment(url, {"redis": redis.pid}, {"redis": tmp / "redis.log"})
        api_log = tmp / "api.log"
        api_args = ["api", "--redis", redis_url, "--port", str(aport), "--default-model", model.name]
        api = stack.enter_context(process([*CLI, *api_args], api_log, env))
        deployment.pids["api"], deployment.logs["api"] = api.pid, api_log
        for i in range(workers):
            name, log, mport = f"worker-{i}", tmp / f"worker-{i}.log", free_port()
            args = [*CLI, "worker", "--redis", redis_url, "--name", f"bench-{i}", "--metrics-port", str(mport)]
            worker = stack.enter_context(process([*args, *engine_args(model, slots, threads)], log, env))
            deployment.pids[name], deployment.logs[name] = worker.pid, log
            deployment.metrics.append(f"http://127.0.0.1:{mport}/metrics")
        wait_ok(f"{url}/readyz", api, api_log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while httpx.get(f"{url}/readyz").json().get("capacity") != slots * workers:
            if time.monotonic() > deadline:
                sys.exit("not every worker registered:\n" + api_log.read_text())
            time.sleep(0.2)
        yield deployment
