"""The READMEs' examples run: every ```python block of client/README.md and README.md, against a live server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.live_server import LiveServer

ROOT = Path(__file__).resolve().parents[2]
READMES = [ROOT / "client" / "README.md", ROOT / "README.md"]
README_URL = "http://127.0.0.1:8000"
BLOCKS = [
    pytest.param(block, id=f"{readme.relative_to(ROOT)}#{n + 1}")
    for readme in READMES
    for n, block in enumerate(re.findall(r"^```python\n(.*?)^```", readme.read_text(), flags=re.S | re.M))
]


def test_client_readme_has_examples():
    assert sum(1 for b in BLOCKS if b.id.startswith("client")) >= 6


@pytest.mark.parametrize("code", BLOCKS)
def test_readme_example_runs(code: str, live_server: LiveServer, capsys: pytest.CaptureFixture[str]):
    assert README_URL in code, "examples talk to the documented address, which the test replaces"
    exec(compile(code.replace(README_URL, live_server.url), "README example", "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out.strip(), "every example prints what it shows"
