"""The READMEs' examples run: every ```python block of client/README.md and README.md, against a live
``eqr serve`` of the bundled models (Sudoku and maze), which is what the examples are written for
(``eqr serve``'s default)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live_server import LiveServer, serve
from tests.requires import os_command

ROOT = Path(__file__).resolve().parents[2]
READMES = [ROOT / "client" / "README.md", ROOT / "README.md"]
README_URL = "http://127.0.0.1:8000"
BUNDLED_MODELS = [ROOT / "models" / "sudoku-small", ROOT / "models" / "maze-small"]
BLOCKS = [
    pytest.param(block, id=f"{readme.relative_to(ROOT)}#{n + 1}")
    for readme in READMES
    for n, block in enumerate(re.findall(r"^```python\n(.*?)^```", readme.read_text(), flags=re.S | re.M))
]


@pytest.fixture(scope="module")
def bundled_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The bundled models, as ``eqr serve`` serves them: an example's output is only meaningful from them."""
    with serve(BUNDLED_MODELS, log_dir=tmp_path_factory.mktemp("readme")) as server:
        yield server


def run_example(code: str, server: LiveServer) -> None:
    assert README_URL in code, "examples talk to the documented address, which the test replaces"
    exec(compile(code.replace(README_URL, server.url), "README example", "exec"), {"__name__": "__readme__"})


def test_client_readme_has_examples():
    assert sum(1 for b in BLOCKS if b.id.startswith("client")) >= 6


@pytest.mark.parametrize("code", BLOCKS)
def test_readme_example_runs(code: str, bundled_server: LiveServer, capsys: pytest.CaptureFixture[str]):
    run_example(code, bundled_server)
    assert capsys.readouterr().out.strip(), "every example prints what it shows"


def test_the_streaming_example_shows_the_model_converging(
    bundled_server: LiveServer, capsys: pytest.CaptureFixture[str]
):
    (code,) = [b.values[0] for b in BLOCKS if "client.stream(" in b.values[0]]
    run_example(code, bundled_server)
    lines = capsys.readouterr().out.splitlines()
    iterations = [line for line in lines if line.startswith("iteration")]
    assert len(iterations) >= 3, lines  # a stream worth watching: the board filling in, event by event
    assert lines[-1].startswith("result: converged"), lines


CURLS = re.findall(r"^```bash\n(curl .*?)^```", (ROOT / "README.md").read_text(), flags=re.S | re.M)


@pytest.mark.parametrize("command", CURLS, ids=["sudoku", "maze"][: len(CURLS)])
def test_readme_curl_examples_work_verbatim(command: str, bundled_server: LiveServer):
    """The README's curl examples, as written but for the address: each answers its puzzle, solved."""

    os_command("curl", "curl")
    assert len(CURLS) == 2 and "localhost:8000" in command
    host = bundled_server.url.removeprefix("http://")
    out = subprocess.run(["bash", "-c", command.replace("localhost:8000", host)], capture_output=True, text=True)
    body = json.loads(out.stdout)
    assert out.returncode == 0 and body["status"] == "converged" and body["valid"] is True, body
