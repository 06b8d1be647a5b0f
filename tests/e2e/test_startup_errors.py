"""Every start-up failure of ``eqr serve`` and ``eqr worker`` is one line and exit status 2.

Real processes (a traceback is what a process prints, not what a function raises), started side by
side so the module costs one torch import's time: model folders whose weights are missing, cut
short, and a port already in use (a NaN weight: tests/model/test_checkpoint.py).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from eqr.model.checkpoint import WEIGHTS
from tests.live_server import free_port, save_tiny_model


def _broken_folders(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Model folders that cannot be loaded, with what their error must say."""
    missing = save_tiny_model(tmp_path / "missing")
    (missing / WEIGHTS).unlink()
    truncated = save_tiny_model(tmp_path / "truncated")
    data = (truncated / WEIGHTS).read_bytes()
    (truncated / WEIGHTS).write_bytes(data[: len(data) // 2])
    return {
        "missing": (missing, f"{missing / WEIGHTS}: no such file"),
        "truncated": (truncated, f"{truncated / WEIGHTS}: cut short, or not a safetensors file"),
    }


def _start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "EQR_LOG_LEVEL": "warning"}
    command = [sys.executable, "-m", "eqr.server.cli", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_startup_errors_are_one_line_and_exit_status_2(tmp_path: Path):
    cases = _broken_folders(tmp_path)
    running = {
        f"serve-{name}": (_start("serve", "--model", str(folder), "--port", str(free_port())), want)
        for name, (folder, want) in cases.items()
    }
    folder, want = cases["truncated"]
    worker = _start("worker", "--model", str(folder), "--metrics-port", "0", "--redis", "redis://127.0.0.1:1/0")
    running["worker-truncated"] = (worker, want)
    with socket.socket() as taken:  # a port in use: uvicorn's bind error, after the model loaded
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        good = save_tiny_model(tmp_path / "good")
        running["serve-port"] = (_start("serve", "--model", str(good), "--port", str(port)), "address already in use")
        outcomes = {name: (proc.communicate(timeout=120)[1], want) for name, (proc, want) in running.items()}
    for name, (err, want) in outcomes.items():
        status = running[name][0].returncode
        assert status == 2, f"{name}: exit status {status}\n{err}"
        assert "Traceback" not in err and want in err, f"{name}:\n{err}"
        assert name == "serve-port" or err.startswith(f"eqr {name.split('-')[0]}: "), err
        assert len(err.strip().splitlines()) == 1, f"{name}:\n{err}"
