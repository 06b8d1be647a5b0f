"""What the repository itself must not carry: paths of the machine it was built on."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a user's or a build machine's home-like folder followed by a name
HOME_LIKE = re.compile(r"(?<![\w.~])/(?:home|root|Users|work)/[\w.-]+")


def tracked_text_files() -> dict[str, str]:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    files = {n.decode(): (ROOT / n.decode()) for n in names if n}
    return {
        name: path.read_text(errors="replace")
        for name, path in files.items()
        if path.is_file() and b"\0" not in path.read_bytes()[:4096]
    }


def test_no_tracked_file_carries_a_machine_path():
    # this checkout's absolute path and the shared/ folder beside it are what reports and benchmarks
    # used to record; any home-like absolute path is the same mistake made on another machine
    here = [str(ROOT), str(ROOT.parent / "shared")]
    offenders = [
        f"{name}: {found}"
        for name, text in tracked_text_files().items()
        for found in [p for p in here if p in text] + HOME_LIKE.findall(text)
    ]
    assert not offenders, offenders
