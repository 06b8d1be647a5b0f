"""OS programs the tests drive as real services: found, or the test fails in one line naming the package.

Never a skip: a missing service would otherwise hide the behaviour it exists to test. ``scripts/test``
installs every package named here.
"""

from __future__ import annotations

import shutil

import pytest


def os_command(name: str, package: str) -> str:
    """The path of ``name``; fails the calling test, without a traceback, when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: apt-get install -y {package} (scripts/test installs it)", pytrace=False)
    return path
