"""``/docs`` and ``/redoc`` render in headless Chromium with every host but the server unreachable.

The browser resolves no name but the server's address (``--host-resolver-rules``), so a page that
needs a CDN stays blank here, as it would on a machine without internet.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.browser import chromium
from tests.live_server import LiveServer, save_tiny_model, serve
from tests.server.api.test_playground import wait_for

OFFLINE = '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder: Path = tmp_path_factory.mktemp("docs")
    with serve(save_tiny_model(folder / "tiny")) as running:
        yield running


@pytest.fixture(scope="module")
def offline_browser() -> Iterator[webdriver.Chrome]:
    with chromium([OFFLINE]) as driver:
        yield driver


def external_sources(driver: webdriver.Chrome, server: LiveServer) -> list[str]:
    urls = [e.get_attribute("src") for e in driver.find_elements(By.CSS_SELECTOR, "script[src]")]
    urls += [e.get_attribute("href") for e in driver.find_elements(By.CSS_SELECTOR, "link[href]")]
    return [u for u in urls if u and not u.startswith(server.url)]


def test_swagger_ui_lists_the_operations_offline(offline_browser: webdriver.Chrome, server: LiveServer):
    offline_browser.get(server.url + "/docs")
    operations = wait_for(offline_browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    paths = {op.text.replace("\u200b", "") for op in operations}
    assert {"/v1/solve", "/v1/jobs", "/v1/jobs/{job_id}", "/healthz"} <= paths, paths
    assert external_sources(offline_browser, server) == []


def test_redoc_renders_offline(offline_browser: webdriver.Chrome, server: LiveServer):
    offline_browser.get(server.url + "/redoc")
    wait_for(offline_browser, lambda d: "Solve one puzzle" in d.find_element(By.TAG_NAME, "body").text)
    assert external_sources(offline_browser, server) == []
