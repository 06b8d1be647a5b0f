"""The Triton kernels build for the GPU (sm_90) on a machine without one, so CI catches a broken GPU build."""

import os
import subprocess
import sys
from pathlib import Path

import triton  # noqa: F401  # a dev dependency: a missing one fails here, never skips

SCRIPT = Path(__file__).with_name("compile_sm90.py")


def test_every_kernel_compiles_to_an_sm90_cubin(tmp_path: Path) -> None:
    # a fresh process without TRITON_INTERPRET (the interpreter's kernels cannot be compiled) and a
    # private cache, so every kernel really goes through the compiler
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 12
    assert all(line.endswith("ttir ttgir llir ptx cubin") for line in lines), done.stdout
