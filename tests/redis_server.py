"""A real ``redis-server`` on a free port, owned by one test (module): started, killed, restarted.

No mock and no skip: the distributed mode's guarantees are about what Redis does (streams, consumer
groups, persistence), so a missing ``redis-server`` fails the tests, naming the package to install.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.live_server import free_port, stop_process
from tests.requires import os_command

START_TIMEOUT_S = 10.0


class RedisServer:
    """``persistent``: append-only file with an fsync per write, so a crash loses no acknowledged write."""

    def __init__(self, folder: Path, *, persistent: bool = False) -> None:
        self.folder = folder
        self.persistent = persistent
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = folder / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)

    def start(self) -> RedisServer:
        binary = os_command("redis-server", "redis-server")
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence]
        args += ["--dir", str(self.folder), "--daemonize", "no"]
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(args, cwd=self.folder, stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"redis-server exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            try:
                if self.client().ping():
                    return self
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server did not answer within {START_TIMEOUT_S} s:\n{self.log_path.read_text()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: a crash, not a shutdown (no final save)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        stop_process(self.process)
