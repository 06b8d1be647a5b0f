// eqr playground: edit a puzzle, POST /v1/solve with "stream": true, and draw the server-sent events
// as they arrive. Plain browser JS, no build step: fetch + ReadableStream, because EventSource can
// only GET and a solve is a POST.
"use strict";

const SIZE = 9;
const CELLS = SIZE * SIZE;
const EXAMPLES = [
  ["Easy (36 givens)", "...26.7.168..7..9.19...45..82.1...4...46.29...5...3.28..93...74.4..5..367.3.18..."],
  ["Medium (32 givens)", "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."],
  ["Harder (24 givens)", ".2.6.8...58...97......4....37....5..6.......4..8....13....2......98...36...3.6.9."],
  ["Hardest (21 givens)", "8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4.."],
];

const $ = (id) => document.getElementById(id);
const state = {
  givens: Array(CELLS).fill(""), // what the user entered: "1".."9" or ""
  residuals: [], // [iteration, residual] of the running or last solve
  controller: null, // AbortController of the running solve
  pending: null, // latest event not drawn yet (drawing is throttled to animation frames)
  aggregate: "", // the rule the last solve asked for, shown with its agreement
};
const FIELD_INPUTS = { puzzle: "puzzle-text", depth: "depth", breadth: "breadth" }; // API field -> input

// -- the board ---------------------------------------------------------------------------------------

function buildBoard() {
  const board = $("board");
  for (let i = 0; i < CELLS; i++) {
    const cell = document.createElement("input");
    cell.className = "cell";
    cell.maxLength = 1;
    cell.inputMode = "numeric";
    cell.autocomplete = "off";
    cell.dataset.index = String(i);
    const r = Math.floor(i / SIZE), c = i % SIZE;
    cell.setAttribute("aria-label", `row ${r + 1} column ${c + 1}`);
    if (c % 3 === 2 && c < 8) cell.classList.add("box-right");
    if (r % 3 === 2 && r < 8) cell.classList.add("box-bottom");
    cell.addEventListener("input", onCellInput);
    cell.addEventListener("keydown", onCellKey);
    cell.addEventListener("paste", onPaste);
    board.appendChild(cell);
  }
}

function cells() {
  return $("board").querySelectorAll(".cell");
}

/** Show the givens, and `board` (81 chars, "." for none) in the other cells. */
function drawBoard(board) {
  cells().forEach((cell, i) => {
    const given = state.givens[i];
    const shown = given || (board && /[1-9]/.test(board[i]) ? board[i] : "");
    cell.value = shown;
    cell.classList.toggle("given", Boolean(given));
    cell.classList.toggle("model", !given && Boolean(shown));
  });
}

function puzzleString() {
  return state.givens.map((d) => d || ".").join("");
}

function compact(text) {
  return text.replace(/\s+/g, "");
}

/** Load an 81-cell puzzle from text; false if it is not one (whitespace is ignored). */
function loadPuzzle(text) {
  const chars = compact(text);
  if (chars.length !== CELLS) return false;
  // a stray character is kept and sent as is: the server's 422 then points at its cell
  state.givens = Array.from(chars, (ch) => (ch === "." || ch === "0" ? "" : ch));
  resetResult();
  return true;
}

function onCellInput(event) {
  const cell = event.target;
  const i = Number(cell.dataset.index);
  const ch = cell.value.slice(-1);
  state.givens[i] = /[1-9]/.test(ch) ? ch : "";
  resetResult();
}

function onCellKey(event) {
  const i = Number(event.target.dataset.index);
  const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -SIZE, ArrowDown: SIZE };
  if (event.key in moves) {
    const next = i + moves[event.key];
    if (next >= 0 && next < CELLS) cells()[next].focus();
    event.preventDefault();
  } else if (event.key === "Enter") {
    solve();
  }
}

function onPaste(event) {
  const text = (event.clipboardData || window.clipboardData).getData("text");
  if (loadPuzzle(text)) event.preventDefault(); // a whole puzzle: fill the grid, not one cell
}

// -- results, errors and the chart -------------------------------------------------------------------

function resetResult() {
  state.residuals = [];
  drawBoard(null);
  $("puzzle-text").value = puzzleString();
  showError(null);
  for (const id of ["status", "iterations", "valid", "agreement", "time"]) {
    $(id).textContent = "–";
    $(id).className = "";
  }
  const example = $("example");
  if (example.value && example.value !== puzzleString()) example.value = ""; // edited: no longer that example
  $("answer").textContent = "";
  $("live").textContent = "";
  drawChart();
  setState("idle");
}

function setState(name) {
  document.body.dataset.state = name;
  const busy = name === "solving";
  $("solve").disabled = busy;
  $("stop").disabled = !busy;
}

/** An API error ({code, message, field, cells}) next to the cells or field at fault; null clears. */
function showError(error) {
  const box = $("error");
  cells().forEach((cell) => {
    cell.classList.remove("bad");
    cell.removeAttribute("title");
  });
  for (const id of Object.values(FIELD_INPUTS)) $(id).classList.remove("bad");
  if (!error) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.hidden = false;
  box.textContent = error.message;
  for (const [r, c] of error.cells || []) {
    const cell = cells()[r * SIZE + c];
    if (!cell) continue;
    cell.classList.add("bad");
    cell.title = error.message;
  }
  const field = FIELD_INPUTS[(error.field || "").split(".")[0]];
  if (field) $(field).classList.add("bad");
}

/** The error to show while the puzzle field holds no puzzle (the board keeps the last one), else null. */
function puzzleTextError() {
  const n = compact($("puzzle-text").value).length;
  if (n === CELLS) return null;
  const message = `the puzzle field has ${n} characters, not ${CELLS}: type or paste ${CELLS} (1-9, '.' or 0 for blanks)`;
  return { message, field: "puzzle" };
}

function showResult(result) {
  drawBoard(result.answer);
  $("status").textContent = result.status;
  $("status").className = `status-${result.status}`;
  const most = Math.max(...result.iterations);
  const conv = result.iterations_to_convergence;
  $("iterations").textContent = conv == null ? `${most}` : `${most} (converged at ${conv})`;
  $("valid").textContent = result.valid ? "yes" : "no";
  $("valid").className = result.valid ? "yes" : "no";
  $("agreement").textContent = `${Math.round(result.agreement * 100)}% of ${result.iterations.length} (${state.aggregate})`;
  const t = result.timings, ms = (v) => `${v.toFixed(0)} ms`;
  $("time").textContent = `${ms(t.queued_ms + t.compute_ms)} (${ms(t.queued_ms)} queued, ${ms(t.compute_ms)} computing)`;
  $("answer").textContent = result.answer;
  const last = state.residuals[state.residuals.length - 1];
  $("live").textContent = last && last[1] != null ? `· final residual ${last[1].toPrecision(3)}` : "";
}

function drawChart() {
  const svg = $("chart");
  const W = 320, H = 140, pad = { l: 34, r: 6, t: 8, b: 18 };
  const pts = state.residuals.filter(([, r]) => r != null && r > 0);
  svg.dataset.points = String(pts.length);
  if (!pts.length) {
    svg.innerHTML = `<text x="${W / 2}" y="${H / 2}" text-anchor="middle" class="axis">no iterations yet</text>`;
    return;
  }
  const logs = pts.map(([, r]) => Math.log10(r));
  let lo = Math.floor(Math.min(...logs)), hi = Math.ceil(Math.max(...logs));
  if (hi === lo) hi = lo + 1;
  const maxIt = Math.max(pts[pts.length - 1][0], 2);
  const x = (it) => pad.l + ((it - 1) / Math.max(maxIt - 1, 1)) * (W - pad.l - pad.r);
  const y = (lg) => pad.t + ((hi - lg) / (hi - lo)) * (H - pad.t - pad.b);
  const line = pts.map(([it], k) => `${x(it).toFixed(1)},${y(logs[k]).toFixed(1)}`).join(" ");
  const last = pts[pts.length - 1];
  svg.innerHTML = `
    <line x1="${pad.l}" y1="${pad.t}" x2="${pad.l}" y2="${H - pad.b}" class="frame"/>
    <line x1="${pad.l}" y1="${H - pad.b}" x2="${W - pad.r}" y2="${H - pad.b}" class="frame"/>
    <text x="${pad.l - 4}" y="${pad.t + 8}" text-anchor="end" class="axis">1e${hi}</text>
    <text x="${pad.l - 4}" y="${H - pad.b}" text-anchor="end" class="axis">1e${lo}</text>
    <text x="${pad.l}" y="${H - 4}" class="axis">1</text>
    <text x="${W - pad.r}" y="${H - 4}" text-anchor="end" class="axis">${maxIt}</text>
    <polyline points="${line}" class="residual"/>
    <circle cx="${x(last[0]).toFixed(1)}" cy="${y(logs[logs.length - 1]).toFixed(1)}" r="2.5" class="dot"/>`;
}

/** Draw at most once per animation frame: a fast model sends events quicker than a screen refreshes. */
function scheduleDraw(event) {
  const first = state.pending === null;
  state.pending = event;
  if (!first) return;
  requestAnimationFrame(() => {
    const ev = state.pending;
    state.pending = null;
    if (!ev || document.body.dataset.state !== "solving") return; // the result came first: it wins
    drawBoard(ev.board);
    const residual = ev.residual == null ? "–" : ev.residual.toPrecision(3);
    $("live").textContent = `· iteration ${ev.iteration}, residual ${residual}`;
    $("iterations").textContent = `${ev.iteration}…`;
    drawChart();
  });
}

// -- talking to the server ---------------------------------------------------------------------------

/** Server-sent events of a fetch response, as {event, data} with data parsed from JSON. */
async function* sseEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trim());
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

function requestBody() {
  const body = { puzzle: puzzleString(), stream: true, aggregate: $("aggregate").value };
  for (const id of ["depth", "breadth"]) {
    const text = $(id).value.trim();
    if (text !== "") body[id] = Number(text); // the server validates; a bad value comes back as a 422
  }
  return body;
}

// -- the API key: kept for this tab only (sessionStorage), sent as a bearer token --------------------

const KEY_STORE = "eqr-api-key";

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { authorization: `Bearer ${key}` } : {};
}

function initApiKey() {
  const input = $("api-key");
  input.value = sessionStorage.getItem(KEY_STORE) || "";
  input.addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORE, input.value.trim());
    loadModel();
  });
}

async function errorOf(response) {
  try {
    const body = await response.json();
    if (body && body.error) return body.error;
  } catch (_) {
    /* not JSON: fall through */
  }
  return { message: `HTTP ${response.status} ${response.statusText}` };
}

async function solve() {
  if (state.controller) return;
  const invalid = puzzleTextError();
  if (invalid) { // solving the board still shown would answer a puzzle the user no longer sees typed
    showError(invalid);
    $("status").textContent = "error";
    setState("error");
    return;
  }
  resetResult();
  setState("solving");
  $("status").textContent = "solving…";
  const controller = new AbortController();
  state.controller = controller;
  const body = requestBody();
  state.aggregate = body.aggregate;
  let result = null;
  try {
    const response = await fetch("v1/solve", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream", ...authHeaders() },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) throw { api: await errorOf(response) };
    for await (const { event, data } of sseEvents(response)) {
      if (event === "iteration") {
        state.residuals.push([data.iteration, data.residual]);
        scheduleDraw(data);
      } else if (event === "result") {
        result = data;
      } else if (event === "error") {
        throw { api: data.error };
      }
    }
    if (!result) throw { api: { message: "the stream ended before the result" } };
    state.pending = null;
    drawChart();
    showResult(result);
    setState("done");
  } catch (err) {
    if (err && err.name === "AbortError") {
      $("status").textContent = "stopped";
      setState("idle");
    } else {
      showError(err && err.api ? err.api : { message: String(err && err.message ? err.message : err) });
      $("status").textContent = "error";
      setState("error");
    }
  } finally {
    state.controller = null;
    if (document.body.dataset.state === "solving") setState("idle");
  }
}

async function loadModel() {
  try {
    const response = await fetch("v1/models", { headers: authHeaders() });
    if (response.status === 401 || response.status === 403) {
      $("model-name").textContent = "this server needs an API key: enter it above";
      return;
    }
    if (!response.ok) return;
    const [model] = (await response.json()).models;
    if (!model) return;
    $("model-name").textContent = `model: ${model.name} (${model.arch.parameters ?? "?"} parameters)`;
    if (model.defaults.depth) $("depth").placeholder = String(model.defaults.depth);
    if (model.defaults.aggregate) $("aggregate").value = model.defaults.aggregate;
    if (model.caps.depth) $("depth").max = String(model.caps.depth);
    if (model.caps.breadth) $("breadth").max = String(model.caps.breadth);
  } catch (_) {
    /* the playground still works with the server's defaults */
  }
}

function init() {
  buildBoard();
  const select = $("example");
  for (const [name, puzzle] of EXAMPLES) select.add(new Option(name, puzzle));
  select.addEventListener("change", () => select.value && loadPuzzle(select.value));
  $("puzzle-text").addEventListener("input", (e) => {
    if (!loadPuzzle(e.target.value)) showError(puzzleTextError());
  });
  $("solve").addEventListener("click", solve);
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("clear").addEventListener("click", () => {
    state.givens = Array(CELLS).fill("");
    select.value = "";
    resetResult();
  });
  select.value = EXAMPLES[0][1];
  loadPuzzle(select.value);
  initApiKey();
  loadModel();
}

document.addEventListener("DOMContentLoaded", init);
