"""Headless Chromium for the browser tests: the distribution's chromium and chromedriver, nothing downloaded."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from selenium import webdriver

from tests.requires import os_command

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1100,900",
]


@contextmanager
def chromium(extra_args: Sequence[str] = (), capabilities: dict[str, Any] | None = None) -> Iterator[webdriver.Chrome]:
    """A Chromium driven by Selenium, quit afterwards; a missing chromium or driver fails in one line."""
    binary, driver_path = os_command("chromium", "chromium"), os_command("chromedriver", "chromium-driver")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for downloads
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in [*CHROMIUM_ARGS, *extra_args]:
        options.add_argument(arg)
    for name, value in (capabilities or {}).items():
        options.set_capability(name, value)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
