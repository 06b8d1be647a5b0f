"""The web playground in headless Chromium (the OS packages ``chromium`` and ``chromium-driver``).

Selenium drives the distribution's chromedriver, which is built for the distribution's chromium, so
nothing is downloaded. The served model is the tiny random one, whose answers are garbage: these tests
check what the page shows (live board, chart, result, errors at their cells), never whether the
answer is right. Screenshots land in ``artifacts/`` for a person to look at.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser import chromium
from tests.live_server import API_KEY, LiveServer, serve

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "artifacts"
BUNDLED_MODEL = ROOT / "models" / "sudoku-small"
CONFLICT = "5" + "." * 8 + "5" + "." * 71  # two 5s in column 1: cells (0, 0) and (1, 0)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    # network events in the performance log: what the page sent
    with chromium(capabilities={"goog:loggingPrefs": {"performance": "ALL"}}) as driver:
        yield driver


def page_state(driver: webdriver.Chrome) -> str:
    return driver.find_element(By.TAG_NAME, "body").get_attribute("data-state") or ""


def wait_for(driver: webdriver.Chrome, condition, timeout_s: float = 20.0):
    return WebDriverWait(driver, timeout_s, poll_frequency=0.05).until(condition)


def text(driver: webdriver.Chrome, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def set_value(driver: webdriver.Chrome, element_id: str, value: str) -> None:
    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(value)


def sent_solves(driver: webdriver.Chrome) -> list[dict]:
    """Bodies of the solves the page POSTed since the last call, from Chromium's own network log."""
    bodies = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        request = message.get("params", {}).get("request", {})
        if message["method"] == "Network.requestWillBeSent" and request.get("url", "").endswith("/v1/solve"):
            bodies.append(json.loads(request["postData"]))
    return bodies


def open_playground(driver: webdriver.Chrome, url: str) -> None:
    driver.get(url + "/")
    wait_for(driver, lambda d: text(d, "model-name"))  # the page read GET /v1/models


def solve_and_check_rendering(driver: webdriver.Chrome, url: str, example: str, depth: str, shot: str) -> str:
    """Solve an example in the page; check the board, chart and result panel; return the answer."""
    open_playground(driver, url)
    Select(driver.find_element(By.ID, "example")).select_by_visible_text(example)
    set_value(driver, "depth", depth)
    driver.find_element(By.ID, "solve").click()
    wait_for(driver, lambda d: page_state(d) in ("done", "error"))
    driver.save_screenshot(str(ARTIFACTS / shot))
    assert page_state(driver) == "done", text(driver, "error")

    answer = text(driver, "answer")
    assert len(answer) == 81
    cells = driver.find_elements(By.CSS_SELECTOR, "#board .cell")
    puzzle = driver.find_element(By.ID, "puzzle-text").get_attribute("value")
    for i, cell in enumerate(cells):
        shown = cell.get_attribute("value")
        if puzzle[i] != ".":
            assert shown == puzzle[i] and "given" in cell.get_attribute("class")
        else:
            assert shown == (answer[i] if answer[i] != "." else ""), f"cell {i}"
    assert text(driver, "status") in ("converged", "max_iterations")
    assert text(driver, "iterations").split()[0].isdigit()
    assert text(driver, "valid") in ("yes", "no")
    assert re.fullmatch(r"\d+ ms \(\d+ ms queued, \d+ ms computing\)", text(driver, "time")), text(driver, "time")
    chart = driver.find_element(By.ID, "chart")
    assert int(chart.get_attribute("data-points")) >= 2 and chart.find_elements(By.TAG_NAME, "polyline")
    return answer


def test_playground_streams_a_solve_and_shows_the_result(browser, live_server: LiveServer):
    ARTIFACTS.mkdir(exist_ok=True)
    solve_and_check_rendering(browser, live_server.url, "Easy (36 givens)", "8", "playground.png")
    assert text(browser, "status") == "max_iterations" and text(browser, "iterations") == "8"
    filled = [c.get_attribute("value") for c in browser.find_elements(By.CSS_SELECTOR, "#board .cell.model")]
    assert filled and all(v.isdigit() for v in filled)  # the model's digits, drawn apart from the givens


def test_playground_marks_the_cells_and_fields_at_fault(browser, live_server: LiveServer):
    open_playground(browser, live_server.url)
    set_value(browser, "puzzle-text", CONFLICT)
    browser.find_element(By.ID, "solve").click()
    wait_for(browser, lambda d: page_state(d) == "error")
    bad = [c.get_attribute("data-index") for c in browser.find_elements(By.CSS_SELECTOR, "#board .cell.bad")]
    assert bad == ["0", "9"] and "conflicting" in text(browser, "error")
    browser.save_screenshot(str(ARTIFACTS / "playground-error.png"))

    set_value(browser, "puzzle-text", "." * 81)
    set_value(browser, "depth", "0")
    browser.find_element(By.ID, "solve").click()
    wait_for(browser, lambda d: page_state(d) == "error")
    assert "bad" in browser.find_element(By.ID, "depth").get_attribute("class") and "depth" in text(browser, "error")


def test_playground_sends_the_aggregate_rule_chosen(browser, live_server: LiveServer):
    open_playground(browser, live_server.url)
    rules = Select(browser.find_element(By.ID, "aggregate"))
    assert [o.get_attribute("value") for o in rules.options] == ["converged", "vote"]
    assert rules.first_selected_option.get_attribute("value") == "converged"  # the server's default
    rules.select_by_value("vote")
    set_value(browser, "breadth", "4")
    set_value(browser, "depth", "4")
    sent_solves(browser)  # forget earlier tests' requests
    browser.find_element(By.ID, "solve").click()
    wait_for(browser, lambda d: page_state(d) in ("done", "error"))
    assert page_state(browser) == "done", text(browser, "error")
    (body,) = sent_solves(browser)
    assert body["aggregate"] == "vote" and body["breadth"] == 4
    assert text(browser, "agreement").endswith("of 4 (vote)")


def test_playground_refuses_a_puzzle_field_that_is_not_a_puzzle(browser, live_server: LiveServer):
    open_playground(browser, live_server.url)  # the first example is on the board
    set_value(browser, "puzzle-text", "hello")
    sent_solves(browser)
    browser.find_element(By.ID, "solve").click()
    wait_for(browser, lambda d: page_state(d) in ("done", "error"))
    assert page_state(browser) == "error" and text(browser, "status") == "error"
    assert "81" in text(browser, "error") and "5" in text(browser, "error")
    assert browser.find_element(By.ID, "puzzle-text").get_attribute("value") == "hello"  # kept, to fix
    assert "bad" in browser.find_element(By.ID, "puzzle-text").get_attribute("class")
    browser.save_screenshot(str(ARTIFACTS / "playground-not-a-puzzle.png"))
    assert sent_solves(browser) == []  # the previous board was not solved instead


def test_playground_stop_cancels_the_work(browser, live_server: LiveServer):
    open_playground(browser, live_server.url)
    set_value(browser, "depth", "1000000")
    browser.find_element(By.ID, "solve").click()
    wait_for(browser, lambda d: int(d.find_element(By.ID, "chart").get_attribute("data-points") or 0) >= 3)
    browser.find_element(By.ID, "stop").click()
    wait_for(browser, lambda d: page_state(d) == "idle" and text(d, "status") == "stopped")
    deadline = time.monotonic() + 10
    while httpx.get(live_server.url + "/readyz").json()["in_flight"]:
        assert time.monotonic() < deadline, "the stopped solve kept running on the server"
        time.sleep(0.05)


def test_playground_sends_the_key_the_user_enters(browser, keyed_server: LiveServer):
    browser.get(keyed_server.url + "/")  # the page itself is public
    wait_for(browser, lambda d: "API key" in text(d, "model-name"))
    set_value(browser, "api-key", API_KEY)
    browser.find_element(By.ID, "depth").click()  # leaving the field stores the key and reloads the model
    wait_for(browser, lambda d: text(d, "model-name").startswith("model:"))
    assert browser.execute_script("return sessionStorage.getItem('eqr-api-key')") == API_KEY
    set_value(browser, "depth", "4")
    browser.find_element(By.ID, "solve").click()
    wait_for(browser, lambda d: page_state(d) in ("done", "error"))
    assert page_state(browser) == "done", text(browser, "error")
    browser.refresh()  # same tab: the key is still there
    wait_for(browser, lambda d: text(d, "model-name").startswith("model:"))
    browser.execute_script("sessionStorage.clear()")


def test_playground_with_the_bundled_model(browser, tmp_path: Path):
    """The real model, for the screenshot: still asserts rendering only, never the answer's quality."""
    with serve(BUNDLED_MODEL, "--slots", "8", log_dir=tmp_path) as server:
        solve_and_check_rendering(browser, server.url, "Easy (36 givens)", "64", "playground-sudoku-small.png")
