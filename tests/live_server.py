"""A real ``eqr serve`` process on a free port, for tests that must cross a socket (SDK, browser).

The models are tiny random-init EqRs saved to temporary folders (a Sudoku one and a 5×5 maze one):
fast on a busy CPU, and with a convergence tolerance of 0 they never converge, so every trajectory
runs its whole depth and a huge depth keeps a request in flight for as long as a test needs
(cancellation, streaming).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import torch

from eqr.model.checkpoint import save_model
from eqr.model.config import EqRConfig
from eqr.model.network import EqRNetwork

TINY = EqRConfig(hidden_size=16, expansion=2, multiple_of=16, L_layers=1, H_cycles=1, L_cycles=1, halt_max_steps=4)
TINY_INFERENCE = {"depth": 6, "noise": 0.01, "window": 2, "tol": 0.0}
START_TIMEOUT_S = 60.0
API_KEY = "test-key-6c1e0b9d2f"  # the key of the ``keyed_server`` fixture
MAZE_SIZE = 5  # the tiny maze model's board side: small enough to type in a test
# a 5×5 maze whose one path winds from S (r1c1) to G (r5c5) through every open cell
MAZE = ["S   #", "### #", "#   #", "# ###", "#   G"]
MAZE_WEIGHTS_SEED = 6


@dataclass(frozen=True)
class LiveServer:
    url: str
    model_name: str  # the default model: the first served
    process: subprocess.Popen
    log_path: Path
    model_names: tuple[str, ...] = ()  # every served model, in order
    folders: tuple[Path, ...] = ()  # their model folders, in the same order


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save_tiny_model(folder: Path) -> Path:
    return Path(save_model(folder, EqRNetwork(TINY), {"task": "sudoku", "inference": TINY_INFERENCE}))


def save_tiny_maze_model(folder: Path) -> Path:
    """A tiny random maze model on a ``MAZE_SIZE`` board: the maze task's forms, not its accuracy.

    Its weights come from a fixed seed, one whose garbage answers mark a handful of cells as path
    ('o'): a page that draws path cells then always has some to draw, whatever seed a solve draws.
    """
    with torch.random.fork_rng():
        torch.manual_seed(MAZE_WEIGHTS_SEED)
        network = EqRNetwork(replace(TINY, vocab_size=6, seq_len=MAZE_SIZE * MAZE_SIZE))
    meta = {"task": "maze", "grid": {"rows": MAZE_SIZE, "cols": MAZE_SIZE}, "inference": TINY_INFERENCE}
    return Path(save_model(folder, network, meta))


GRID = {"rows": 3, "cols": 4, "charset": ".xy"}  # the tiny generic grid task: no rules, any characters


def save_tiny_grid_model(folder: Path) -> Path:
    """A tiny random model of a generic grid task (``GRID``): rows of characters, nothing to verify."""
    network = EqRNetwork(replace(TINY, vocab_size=1 + len(GRID["charset"]), seq_len=GRID["rows"] * GRID["cols"]))
    return Path(save_model(folder, network, {"task": "grid", "grid": GRID, "inference": TINY_INFERENCE}))


@contextmanager
def serve(
    models: Path | Sequence[Path],
    *extra_args: str,
    log_dir: Path | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[LiveServer]:
    """Start ``eqr serve`` on the model folder(s) (the first is the default model), wait for ``/readyz``,
    and kill it afterwards.

    The server's log goes to ``log_dir`` (default: beside the first model folder, for a temporary
    model); ``env`` adds or overrides environment variables (``EQR_*`` settings; the log level is warning).
    """
    folders = [models] if isinstance(models, Path) else list(models)
    port = free_port()
    log_path = (log_dir or folders[0].parent) / f"{folders[0].name}-server.log"
    env = {**os.environ, "EQR_LOG_LEVEL": "warning", **(env or {})}
    cmd = [sys.executable, "-m", "eqr.server.cli", "serve", "--port", str(port)]
    cmd += [arg for folder in folders for arg in ("--model", str(folder))]
    with log_path.open("w+") as log:
        proc = subprocess.Popen([*cmd, "--threads", "1", *extra_args], env=env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(proc, url, log_path)
            names = tuple(folder.name for folder in folders)
            yield LiveServer(url=url, model_name=names[0], process=proc, log_path=log_path, model_names=names,
                             folders=tuple(folders))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def stop_process(proc: subprocess.Popen | None, timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(proc: subprocess.Popen, url: str, log_path: Path) -> None:
    wait_http_ok(proc, f"{url}/readyz", log_path, "eqr serve", START_TIMEOUT_S)


def wait_http_ok(proc: subprocess.Popen, url: str, log_path: Path, name: str, timeout_s: float) -> None:
    """Until ``GET url`` answers 200; raises with the process's log if it exits or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after {timeout_s} s:\n{log_path.read_text()}")
            time.sleep(0.1)
