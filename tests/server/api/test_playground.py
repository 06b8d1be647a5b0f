"""The web playground in headless Chromium (the OS packages ``chromium`` and ``chromium-driver``).

Selenium drives the distribution's chromedriver, which is built for the distribution's chromium, so
nothing is downloaded. The served models are the tiny random ones (a Sudoku one, the default, and a
5×5 maze one), whose answers are garbage: these tests check what the page shows (live board, chart,
result, errors at their cells, the maze's characters and path as the stream brings them), never
whether the answer is right. Screenshots land in ``artifacts/`` for a person to look at.
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
from tests.live_server import API_KEY, GRID, MAZE, MAZE_SIZE, LiveServer, serve

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "artifacts"
BUNDLED_MODEL = ROOT / "models" / "sudoku-small"
BUNDLED_MAZE = ROOT / "models" / "maze-small"
CONFLICT = "5" + "." * 8 + "5" + "." * 71  # two 5s in column 1: cells (0, 0) and (1, 0)
MAZE_MODEL = "maze-tiny"  # the live server's second model
# records each board the page draws while solving, with the iteration it shows: how a test sees the
# board change from event to event (drawing is throttled to animation frames, so some are skipped)
RECORD_DRAWS = """
window.drawn = [];
const board = document.getElementById("board");
new MutationObserver(() => {
  const shown = document.getElementById("iterations").textContent;
  if (document.body.dataset.state !== "solving" || !shown.endsWith("…")) return;
  const chars = Array.from(board.querySelectorAll(".cell"), (cell) => cell.dataset.ch).join("");
  window.drawn.push([parseInt(shown, 10), chars]);
}).observe(board, { subtree: true, attributes: true, attributeFilter: ["data-ch"] });
"""


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


def solve_requests(driver: webdriver.Chrome) -> list[tuple[str, dict]]:
    """``(request id, body)`` of the solves the page POSTed since the last call (Chromium's network log)."""
    sent = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        request = message.get("params", {}).get("request", {})
        if message["method"] == "Network.requestWillBeSent" and request.get("url", "").endswith("/v1/solve"):
            sent.append((message["params"]["requestId"], json.loads(request["postData"])))
    return sent


def sent_solves(driver: webdriver.Chrome) -> list[dict]:
    """Bodies of the solves the page POSTed since the last call."""
    return [body for _, body in solve_requests(driver)]


def streamed_events(driver: webdriver.Chrome, request_id: str) -> list[tuple[str, dict]]:
    """The server-sent events of a finished streamed solve, as the browser received them."""
    body = driver.execute_cdp_cmd("Network.getResponseBody", {"requestId": request_id})["body"]
    events = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def board_chars(driver: webdriver.Chrome) -> str:
    """The characters a maze or grid board shows, row after row."""
    return "".join(c.get_attribute("data-ch") for c in driver.find_elements(By.CSS_SELECTOR, "#board .cell"))


def choose_model(driver: webdriver.Chrome, name: str) -> None:
    Select(driver.find_element(By.ID, "model")).select_by_value(name)


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
    assert [o.get_attribute("value") for o in rules.options] == ["", "converged", "vote"]
    assert rules.first_selected_option.text == "converged (default)"  # the model's, sent as nothing
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


def request_fields(url: str) -> dict[str, dict]:
    """The request fields of the API's schema (what the page builds its controls from)."""
    properties = httpx.get(url + "/openapi.json").json()["components"]["schemas"]["SolveRequest"]["properties"]
    return {name: p for name, p in properties.items() if name not in ("puzzle", "stream", "model")}


def open_more(driver: webdriver.Chrome) -> None:
    if not driver.find_element(By.ID, "more").is_displayed():
        driver.find_element(By.ID, "more-toggle").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "more").is_displayed())


def test_playground_has_a_control_for_every_request_field(browser, live_server: LiveServer):
    """Made from the schema, so a field the API adds gets its control; left empty, a field is not sent (the
    model's default applies, and shows in the control)."""
    fields = request_fields(live_server.url)
    assert {"verify", "budget", "breadth_mode", "quorum", "preset", "timeout_ms"} <= set(fields)
    open_playground(browser, live_server.url)
    more = browser.find_element(By.ID, "more")
    assert not more.is_displayed()  # folded: the puzzle and the main settings first
    for name in fields:
        control = browser.find_element(By.ID, name)
        assert (name in ("depth", "breadth", "aggregate")) != (control in more.find_elements(By.ID, name)), name
    open_more(browser)
    assert all(browser.find_element(By.ID, name).is_displayed() for name in fields)
    assert browser.find_element(By.ID, "depth").get_attribute("placeholder") == "6"  # the tiny model's depth
    assert Select(browser.find_element(By.ID, "verify")).first_selected_option.text == "off (default)"
    # the tiny model's folder lists no preset: paper is not offered (the server would refuse it)
    preset = Select(browser.find_element(By.ID, "preset"))
    assert preset.first_selected_option.text == "none (this model takes no preset)"
    assert all(not o.is_enabled() for o in preset.options[1:])
    set_value(browser, "depth", "2")
    sent_solves(browser)
    browser.find_element(By.ID, "solve").click()
    wait_for(browser, lambda d: page_state(d) in ("done", "error"))
    assert page_state(browser) == "done", text(browser, "error")
    (body,) = sent_solves(browser)
    assert set(body) == {"puzzle", "stream", "model", "depth"}


def test_playground_runs_verified_mode_with_a_budget_and_shows_each_restart(browser, live_server: LiveServer):
    """The tiny model never answers a valid grid: verified mode restarts until the budget is spent. The
    page sends the settings as typed, draws a residual line per trajectory and reports the restarts."""
    open_playground(browser, live_server.url)
    open_more(browser)
    set_value(browser, "depth", "4")
    Select(browser.find_element(By.ID, "verify")).select_by_value("true")
    set_value(browser, "budget", "12")
    Select(browser.find_element(By.ID, "breadth_mode")).select_by_value("fixed")
    set_value(browser, "seed", "3")
    solve_requests(browser)
    browser.find_element(By.ID, "solve").click()
    wait_for(browser, lambda d: page_state(d) in ("done", "error"))
    browser.save_screenshot(str(ARTIFACTS / "playground-verified.png"))
    assert page_state(browser) == "done", text(browser, "error")
    ((request_id, body),) = solve_requests(browser)
    assert {k: body[k] for k in ("verify", "budget", "breadth_mode", "depth", "seed")} == {
        "verify": True, "budget": 12, "breadth_mode": "fixed", "depth": 4, "seed": 3
    }  # fmt: skip
    assert text(browser, "verified") == "no (2 restarts)"
    events = [data for name, data in streamed_events(browser, request_id) if name == "iteration"]
    assert [(e["trajectory"], e["restart"], e["ended"]) for e in events if e["ended"]] == [
        (0, 0, "depth"), (1, 1, "depth"), (2, 2, "depth")
    ]  # fmt: skip
    assert len(browser.find_elements(By.CSS_SELECTOR, "#chart polyline")) == 3  # a line per trajectory

    set_value(browser, "budget", "1")  # less than the breadth: the server names the field, the page marks it
    set_value(browser, "breadth", "4")
    browser.find_element(By.ID, "solve").click()
    wait_for(browser, lambda d: page_state(d) == "error")
    assert "budget 1" in text(browser, "error")
    assert "bad" in browser.find_element(By.ID, "budget").get_attribute("class")
    browser.refresh()  # the next test starts from the defaults


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


@pytest.fixture(scope="module")
def bundled_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Both bundled models, as ``eqr serve`` serves them by default."""
    with serve([BUNDLED_MODEL, BUNDLED_MAZE], "--slots", "8", log_dir=tmp_path_factory.mktemp("bundled")) as server:
        yield server


def test_playground_with_the_bundled_model(browser, bundled_server: LiveServer):
    """The real model, for the screenshot: still asserts rendering only, never the answer's quality."""
    solve_and_check_rendering(browser, bundled_server.url, "Easy (36 givens)", "64", "playground-sudoku-small.png")


def test_the_maze_editor_leaves_no_empty_band_beside_the_settings(browser, bundled_server: LiveServer):
    """maze-small's puzzle editor is 11 lines tall. The model and example menus stay at the top of the
    controls, level with the editor (they sat at its bottom edge, under an empty band), and every other
    setting fits beside it: the editor alone sets the controls' height."""
    open_playground(browser, bundled_server.url)
    choose_model(browser, BUNDLED_MAZE.name)
    wait_for(browser, lambda d: d.find_element(By.ID, "board").get_attribute("data-kind") == "maze")
    assert browser.find_element(By.ID, "rows-text").get_attribute("rows") == "11"
    browser.save_screenshot(str(ARTIFACTS / "playground-maze-small.png"))

    def box(element_id: str) -> dict:
        return browser.find_element(By.ID, element_id).rect

    editor = box("rows-text")
    for menu in ("model", "example"):
        assert abs(box(menu)["y"] - editor["y"]) <= 16, (menu, box(menu), editor)
    controls, editor_label = box("controls"), box("rows-text-label")
    assert controls["height"] <= editor_label["height"] + 32, (controls, editor_label)  # padding, no band
    solve = box("solve")
    assert solve["y"] + solve["height"] <= editor["y"] + editor["height"] + 4  # beside the editor, not below


def test_playground_switches_to_the_maze_model_and_back(browser, live_server: LiveServer):
    models = {m["name"]: m for m in httpx.get(live_server.url + "/v1/models").json()["models"]}
    open_playground(browser, live_server.url)
    menu = Select(browser.find_element(By.ID, "model"))
    assert [o.get_attribute("value") for o in menu.options] == [live_server.model_name, MAZE_MODEL]
    assert menu.first_selected_option.get_attribute("value") == live_server.model_name  # the default
    assert len(browser.find_elements(By.CSS_SELECTOR, "#board input.cell")) == 81

    choose_model(browser, MAZE_MODEL)
    wait_for(browser, lambda d: d.find_element(By.ID, "board").get_attribute("data-kind") == "maze")
    example = models[MAZE_MODEL]["example"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#board div.cell")) == MAZE_SIZE * MAZE_SIZE
    assert browser.find_element(By.ID, "rows-text").get_attribute("value") == "\n".join(example)
    assert board_chars(browser) == "".join(example)  # the model's example, drawn cell by cell
    assert browser.find_element(By.ID, "rows-text").is_displayed()  # a maze is edited as rows
    assert not browser.find_element(By.ID, "puzzle-text").is_displayed()  # the Sudoku field is not the editor
    assert Select(browser.find_element(By.ID, "example")).first_selected_option.text == f"{MAZE_MODEL}'s example"

    choose_model(browser, live_server.model_name)  # back to Sudoku: its board and its model's example
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#board input.cell")) == 81)
    sudoku_example = models[live_server.model_name]["example"]
    assert browser.find_element(By.ID, "puzzle-text").get_attribute("value") == sudoku_example
    assert not browser.find_element(By.ID, "rows-text").is_displayed()


def test_playground_solves_a_maze_and_draws_the_path_as_it_streams(browser, live_server: LiveServer):
    open_playground(browser, live_server.url)
    choose_model(browser, MAZE_MODEL)
    set_value(browser, "rows-text", "\n".join(MAZE))
    assert board_chars(browser) == "".join(MAZE)  # walls, open cells, S and G, before solving
    colour = {
        ch: browser.find_element(By.CSS_SELECTOR, f'#board .cell[data-ch="{ch}"]').value_of_css_property(
            "background-color"
        )
        for ch in "# SG"
    }
    assert len(set(colour.values())) == 4  # each character its own colour

    set_value(browser, "depth", "40")
    browser.execute_script(RECORD_DRAWS)
    solve_requests(browser)  # forget earlier tests' requests
    browser.find_element(By.ID, "solve").click()
    wait_for(browser, lambda d: page_state(d) in ("done", "error"))
    browser.save_screenshot(str(ARTIFACTS / "playground-maze.png"))
    assert page_state(browser) == "done", text(browser, "error")

    ((request_id, body),) = solve_requests(browser)
    assert body["model"] == MAZE_MODEL and body["puzzle"] == MAZE  # the rows, as a list: answers come back so
    events = streamed_events(browser, request_id)
    boards = {data["iteration"]: "".join(data["board"]) for event, data in events if event == "iteration"}
    (answer,) = [data["answer"] for event, data in events if event == "result"]

    drawn = browser.execute_script("return window.drawn")
    assert len({chars for _, chars in drawn}) >= 2, drawn  # the board changed while the model iterated
    assert all(chars == boards[iteration] for iteration, chars in drawn)  # each draw is that event's board
    assert any("o" in chars for _, chars in drawn), drawn  # path cells appeared during the solve

    assert board_chars(browser) == "".join(answer) and text(browser, "answer") == "\n".join(answer)
    path = browser.find_elements(By.CSS_SELECTOR, '#board .cell[data-ch="o"]')
    assert len(path) == "".join(answer).count("o")
    assert all(cell.value_of_css_property("background-color") not in colour.values() for cell in path)
    for cell in browser.find_elements(By.CSS_SELECTOR, "#board .cell"):
        r, c = divmod(int(cell.get_attribute("data-index")), MAZE_SIZE)
        given, shown = MAZE[r][c], answer[r][c]
        assert ("model" in cell.get_attribute("class")) == (shown != given)
        broke = shown != given and not (given == " " and shown == "o")  # anything but a path on an open cell
        assert ("off" in cell.get_attribute("class")) == broke
    assert text(browser, "status") == "max_iterations" and text(browser, "iterations") == "40"
    assert text(browser, "valid") in ("yes", "no")


def test_playground_marks_the_maze_cells_at_fault(browser, live_server: LiveServer):
    open_playground(browser, live_server.url)
    choose_model(browser, MAZE_MODEL)
    two_starts = [*MAZE[:4], "#S  G"]  # a second S at r5c2
    set_value(browser, "rows-text", "\n".join(two_starts))
    browser.find_element(By.ID, "solve").click()
    wait_for(browser, lambda d: page_state(d) == "error")
    bad = [int(c.get_attribute("data-index")) for c in browser.find_elements(By.CSS_SELECTOR, "#board .cell.bad")]
    assert bad == [0, 4 * MAZE_SIZE + 1] and "exactly one start" in text(browser, "error")
    browser.save_screenshot(str(ARTIFACTS / "playground-maze-error.png"))

    set_value(browser, "rows-text", "\n".join(MAZE[:4]))  # a row short: the server names the shape
    browser.find_element(By.ID, "solve").click()
    wait_for(browser, lambda d: page_state(d) == "error")
    assert "5x5" in text(browser, "error") and "bad" in browser.find_element(By.ID, "rows-text").get_attribute("class")


def test_playground_draws_a_generic_grid_and_reports_no_verdict(browser, grid_server: LiveServer):
    open_playground(browser, grid_server.url)  # the default model is a grid: the page takes its board
    wait_for(browser, lambda d: d.find_element(By.ID, "board").get_attribute("data-kind") == "grid")
    cells = browser.find_elements(By.CSS_SELECTOR, "#board div.cell")
    assert len(cells) == GRID["rows"] * GRID["cols"]
    example = httpx.get(grid_server.url + "/v1/models").json()["models"][0]["example"]
    assert browser.find_element(By.ID, "rows-text").get_attribute("value") == "\n".join(example)

    puzzle = ["x..y", ".xy.", "...."]
    set_value(browser, "rows-text", "\n".join(puzzle))
    assert [c.text for c in cells] == list("".join(puzzle))  # a grid shows its characters
    set_value(browser, "depth", "3")
    browser.find_element(By.ID, "solve").click()
    wait_for(browser, lambda d: page_state(d) in ("done", "error"))
    assert page_state(browser) == "done", text(browser, "error")
    answer = "".join(text(browser, "answer").splitlines())
    assert [c.text for c in cells] == [ch if ch.strip() else "" for ch in answer]
    changed = [i for i, c in enumerate(cells) if "model" in c.get_attribute("class")]
    assert changed == [i for i, ch in enumerate(answer) if ch != "".join(puzzle)[i]]
    assert text(browser, "valid") == "n/a"  # the task has no rules: neither yes nor no
