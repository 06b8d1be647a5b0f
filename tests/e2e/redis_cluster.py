"""The distributed mode as real processes: a redis-server, one ``eqr api`` and ``eqr worker`` processes.

The command lines are built here, in one place, so the deployment test can check that the compose
file runs the same commands with the same flags. Timings are shortened (heartbeat 0.5 s, claim after
2 s idle) so fault tests take seconds; the tiny model never converges (tolerance 0), so a job runs its
whole depth, about 3 ms an iteration on a busy CPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from eqr.server.broker.redis_protocol import Keys
from tests.live_server import free_port
from tests.redis_server import RedisServer

START_TIMEOUT_S = 60.0
TIMING = ["--heartbeat", "0.5", "--claim-idle", "2"]
UNSERVED_WAIT_S = 3  # a synchronous request waits this long for a worker of its model to come back
SLOTS, PREFETCH, MAX_DELIVERIES = 4, 2, 3


def api_args(redis_url: str, host: str, port: int, default_model: str) -> list[str]:
    """``eqr api`` arguments (after the program name)."""
    api = ["--default-model", default_model, "--unserved-wait", str(UNSERVED_WAIT_S)]
    return ["api", "--redis", redis_url, "--host", host, "--port", str(port), *api, *TIMING]


def worker_args(redis_url: str, model: str | Sequence[str], name: str, host: str, metrics_port: int) -> list[str]:
    """``eqr worker`` arguments (after the program name); several model folders: one ``--model`` each."""
    folders = [model] if isinstance(model, str) else list(model)
    return [
        "worker",
        "--redis",
        redis_url,
        *(arg for folder in folders for arg in ("--model", folder)),
        "--name",
        name,
        "--metrics-host",
        host,
        "--metrics-port",
        str(metrics_port),
        "--slots",
        str(SLOTS),
        "--prefetch",
        str(PREFETCH),
        "--max-deliveries",
        str(MAX_DELIVERIES),
        "--max-depth",
        "1000000",
        "--threads",
        "1",
        *TIMING,
    ]


@dataclass
class Proc:
    name: str
    process: subprocess.Popen
    log_path: Path
    url: str  # the API, or the worker's metrics/health server

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text()

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait()

    def terminate(self, timeout: float = 30.0) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


@dataclass
class Cluster:
    redis: RedisServer
    model_dir: Path  # what a worker serves unless told otherwise, and the API's default model
    folder: Path
    api: Proc | None = None
    workers: dict[str, Proc] = field(default_factory=dict)

    def _spawn(self, name: str, args: list[str], url: str) -> Proc:
        log_path = self.folder / f"{name}.log"
        env = {**os.environ, "EQR_LOG_LEVEL": "info", "EQR_DRAIN_TIMEOUT_S": "1"}
        with log_path.open("w") as log:
            process = subprocess.Popen([sys.executable, "-m", "eqr.server.cli", *args], env=env, stdout=log, stderr=log)
        return Proc(name, process, log_path, url)

    def start_api(self) -> Proc:
        port = free_port()
        args = api_args(self.redis.url, "127.0.0.1", port, default_model=self.model_dir.name)
        self.api = self._spawn("api", args, f"http://127.0.0.1:{port}")
        return self.api

    def start_worker(self, name: str, metrics_port: int | None = None, models: Sequence[Path] = ()) -> Proc:
        """``metrics_port`` None: a free port found here; 0: the worker picks one, and ``url`` stays empty
        until :meth:`find_metrics_url` reads it from the worker's heartbeat in Redis. ``models``: the
        folders it serves (default: ``model_dir``)."""
        port = free_port() if metrics_port is None else metrics_port
        folders = [str(m) for m in models or [self.model_dir]]
        args = worker_args(self.redis.url, folders, name, "127.0.0.1", port)
        self.workers[name] = self._spawn(name, args, f"http://127.0.0.1:{port}" if port else "")
        return self.workers[name]

    def find_metrics_url(self, proc: Proc) -> str:
        """The worker's /metrics address from its heartbeat (``P:worker:{name}``), once it has sent one."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while (doc := self.redis.client().get(Keys("eqr").worker(proc.name))) is None:
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name} sent no heartbeat (exit status {proc.process.poll()}):\n{proc.log()}")
            time.sleep(0.1)
        proc.url = f"http://127.0.0.1:{json.loads(doc)['metrics_port']}"
        return proc.url

    def wait_healthy(self, proc: Proc, path: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(base_url=proc.url, timeout=5) as client:
            while True:
                if not proc.alive():
                    raise RuntimeError(f"{proc.name} exited with {proc.process.returncode}:\n{proc.log()}")
                try:
                    if client.get(path).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{proc.name} not healthy after {START_TIMEOUT_S} s:\n{proc.log()}")
                time.sleep(0.1)

    def wait_capacity(self, slots: int) -> None:
        """Until the API node counts ``slots`` slots: every worker it should see sent a heartbeat."""
        assert self.api is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while httpx.get(f"{self.api.url}/readyz").json().get("capacity") != slots:
            assert time.monotonic() < deadline, "the API never saw every worker"
            time.sleep(0.1)

    def close(self) -> None:
        for proc in [*self.workers.values(), *([self.api] if self.api else [])]:
            proc.kill()
        self.redis.kill()


@contextmanager
def cluster(
    folder: Path,
    model_dir: Path,
    workers: list[str],
    *,
    persistent: bool,
    models: Mapping[str, Sequence[Path]] | None = None,
) -> Iterator[Cluster]:
    """Redis, the API and ``workers``, started in parallel; ready when the API counts every worker.

    ``models``: the folders of the workers that serve others than ``model_dir`` (an engine of
    ``SLOTS`` slots each)."""
    c = Cluster(RedisServer(folder, persistent=persistent), model_dir, folder)
    served = {name: list((models or {}).get(name, [model_dir])) for name in workers}
    try:
        c.redis.start()
        c.start_api()
        for name, folders in served.items():
            c.start_worker(name, models=folders)
        for proc in c.workers.values():
            c.wait_healthy(proc, "/healthz")
        assert c.api is not None
        c.wait_healthy(c.api, "/readyz")
        c.wait_capacity(SLOTS * sum(len(folders) for folders in served.values()))
        yield c
    finally:
        c.close()
