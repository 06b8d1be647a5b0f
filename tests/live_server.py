"""A real ``eqr serve`` process on a free port, for tests that must cross a socket (SDK, browser).

The model is a tiny random-init EqR saved to a temporary folder: fast on a busy CPU, and with a
convergence tolerance of 0 it never converges, so every trajectory runs its whole depth and a huge
depth keeps a request in flight for as long as a test needs (cancellation, streaming).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from eqr.model.checkpoint import save_model
from eqr.model.config import EqRConfig
from eqr.model.network import EqRNetwork

TINY = EqRConfig(hidden_size=16, expansion=2, multiple_of=16, L_layers=1, H_cycles=1, L_cycles=1, halt_max_steps=4)
TINY_INFERENCE = {"depth": 6, "noise": 0.01, "window": 2, "tol": 0.0}
START_TIMEOUT_S = 60.0
API_KEY = "test-key-6c1e0b9d2f"  # the key of the ``keyed_server`` fixture


@dataclass(frozen=True)
class LiveServer:
    url: str
    model_name: str
    process: subprocess.Popen
    log_path: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save_tiny_model(folder: Path) -> Path:
    return Path(save_model(folder, EqRNetwork(TINY), {"task": "sudoku", "inference": TINY_INFERENCE}))


@contextmanager
def serve(
    model_dir: Path, *extra_args: str, log_dir: Path | None = None, env: dict[str, str] | None = None
) -> Iterator[LiveServer]:
    """Start ``eqr serve`` on ``model_dir``, wait for ``/readyz``, and kill it afterwards.

    The server's log goes to ``log_dir`` (default: beside the model folder, for a temporary model);
    ``env`` adds or overrides environment variables (``EQR_*`` settings; the log level is warning).
    """
    port = free_port()
    log_path = (log_dir or model_dir.parent) / f"{model_dir.name}-server.log"
    env = {**os.environ, "EQR_LOG_LEVEL": "warning", **(env or {})}
    cmd = [sys.executable, "-m", "eqr.server.cli", "serve", "--model", str(model_dir), "--port", str(port)]
    with log_path.open("w+") as log:
        proc = subprocess.Popen([*cmd, "--threads", "1", *extra_args], env=env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(proc, url, log_path)
            yield LiveServer(url=url, model_name=model_dir.name, process=proc, log_path=log_path)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _wait_ready(proc: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(base_url=url, timeout=5) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"eqr serve exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"eqr serve not ready after {START_TIMEOUT_S} s:\n{log_path.read_text()}")
            time.sleep(0.1)
