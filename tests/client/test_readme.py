"""The documented examples run: every ```python block and every curl command of README.md,
client/README.md and the documentation site's pages (docs/), against a live ``eqr serve`` of the
bundled models (Sudoku and maze), which is what the examples are written for (``eqr serve``'s default)."""

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
READMES = [ROOT / "client" / "README.md", ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
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


CURLS = [
    pytest.param(block, id=f"{page.relative_to(ROOT)}#{n + 1}")
    for page in READMES
    for n, block in enumerate(re.findall(r"^```bash\n(curl .*?)^```", page.read_text(), flags=re.S | re.M))
]


def _json_documents(text: str) -> list[dict]:
    """The JSON bodies a block printed, one per curl command."""
    decoder, docs, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        doc, end = decoder.raw_decode(text, at)
        docs.append(doc)
        at = end + len(text[end:]) - len(text[end:].lstrip())
    return docs


def _check_answer(body: dict) -> None:
    """A finished solve: a valid answer (converged, or halted by the paper's learned halting)."""
    assert body.get("error") is None, body
    assert body["status"] in ("converged", "halted") and body["valid"] is True, body


def test_the_readme_shows_a_sudoku_and_a_maze_request():
    readme = [c.values[0] for c in CURLS if c.id.startswith("README.md#")]
    assert len(readme) == 2 and '"model": "maze-small"' in readme[1], readme


@pytest.mark.parametrize("command", CURLS)
def test_curl_examples_work_verbatim(command: str, bundled_server: LiveServer):
    """Each curl example, as written but for the address: a solve answers its puzzle, a stream ends in
    its result, a job is accepted and then found."""

    os_command("curl", "curl")
    assert "localhost:8000" in command
    host = bundled_server.url.removeprefix("http://")
    out = subprocess.run(["bash", "-c", command.replace("localhost:8000", host)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip(), out.stderr
    if '"stream": true' in command:
        events = [block for block in out.stdout.split("\n\n") if block.strip()]
        assert "event: iteration" in events[0] and "event: result" in events[-1], out.stdout
        _check_answer(json.loads(events[-1].split("data: ", 1)[1]))
        return
    bodies = _json_documents(out.stdout)
    assert len(bodies) == command.count("curl "), out.stdout
    for body in bodies:
        if "/v1/jobs" in command:
            assert body["status"] in ("pending", "running", "done") and body["id"], body
        else:
            _check_answer(body)


def test_readme_is_a_front_page_whose_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), f"README.md links to a missing {target}"


def test_ci_runs_the_readmes_test_command():
    """The README's first code block gives two commands, install-and-serve then the tests; CI's entry
    point runs the second one as written, so the README's test command is what CI proves."""
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block is not None
    lines = [line.split("  #")[0].strip() for line in block.group(1).strip().splitlines()]
    assert len(lines) == 2 and lines[0].endswith("eqr serve")
    test_command = lines[1]
    ci = [line.split("  #")[0].strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert f"exec {test_command}" in ci, f"{test_command!r} is not what .ci/run runs"
