// eqr playground: pick a served model, edit a puzzle of its task, POST /v1/solve with "stream": true,
// and draw the server-sent events as they arrive. Plain browser JS, no build step: fetch +
// ReadableStream, because EventSource can only GET and a solve is a POST.
//
// Two kinds of board: a Sudoku (9×9 inputs, typed in place or pasted as 81 characters) and a grid
// of characters (a maze, or a generic grid task), edited as rows in a textarea and drawn one cell
// per character, coloured by character. GET /v1/models says which kind each model takes.
//
// The request fields' controls are made from the API's own schema (openapi.json, SolveRequest): a
// field the server adds gets its control with no edit here. Empty means "not sent": the model's
// default (GET /v1/models, shown greyed in the control) or the preset's value applies.
"use strict";

const SUDOKU_SIZE = 9;
const SUDOKU_CELLS = SUDOKU_SIZE * SUDOKU_SIZE;
const SUDOKU_EXAMPLES = [
  ["Easy (36 givens)", "...26.7.168..7..9.19...45..82.1...4...46.29...5...3.28..93...74.4..5..367.3.18..."],
  ["Medium (32 givens)", "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."],
  ["Harder (24 givens)", ".2.6.8...58...97......4....37....5..6.......4..8....13....2......98...36...3.6.9."],
  ["Hardest (21 givens)", "8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4.."],
];
const SUDOKU_BOARD = { kind: "sudoku", rows: SUDOKU_SIZE, cols: SUDOKU_SIZE }; // until /v1/models answers
const MAZE_PATH = "o"; // how a maze answer marks its path; the other maze characters are the puzzle's
const MAZE_OPEN = " ";
// what a maze cell shows as text (its colour says the rest); a generic grid shows every character
const MAZE_GLYPHS = { "#": "", " ": "", o: "", S: "S", G: "G" };
const MAX_EDITOR_ROWS = 12; // the rows editor's height, in lines: a taller board scrolls in it

const $ = (id) => document.getElementById(id);
const state = {
  models: [], // GET /v1/models (its `default` names the server's default model)
  model: null, // the selected model (null until the list arrives: the page starts as a Sudoku)
  board: SUDOKU_BOARD, // the board drawn: {kind, rows, cols}
  examples: [], // [name, puzzle] of the example menu, for the board's task
  givens: Array(SUDOKU_CELLS).fill(""), // Sudoku: what the user entered, "1".."9" or ""
  rows: [], // maze or grid: the puzzle's rows, as typed
  fields: [], // [{name, schema}] of the request fields, in the schema's order (openapi.json)
  residuals: [], // [trajectory, iteration, residual] of the running or last solve
  controller: null, // AbortController of the running solve
  pending: null, // latest event not drawn yet (drawing is throttled to animation frames)
  aggregate: "", // the rule the last solve asked for, shown with its agreement
};

function isSudoku() {
  return state.board.kind === "sudoku";
}

/** The input that holds the puzzle as text: 81 characters for a Sudoku, rows for the others. */
function puzzleInput() {
  return isSudoku() ? "puzzle-text" : "rows-text";
}

/** The input that shows a request field (a 422's `field`), if the page has one. */
function fieldInput(field) {
  if (field === "puzzle") return puzzleInput();
  return state.fields.some((f) => f.name === field) ? field : null;
}

// -- request fields, from the API's schema -----------------------------------------------------------

const MAIN_FIELDS = ["depth", "breadth", "aggregate"]; // beside the puzzle; every other field under "More"
const PAGE_FIELDS = new Set(["puzzle", "stream", "model"]); // set by the page itself

/** A property of the schema as one plain schema: its non-null alternative, with the property's own
 * description and default; a one-value Literal (`const`) as an enum. */
function plainSchema(property) {
  const kind = (property.anyOf || [property]).find((s) => s.type !== "null") || {};
  const values = kind.enum || (kind.const !== undefined ? [kind.const] : null);
  return { ...kind, enum: values, title: property.title, description: property.description, default: property.default };
}

/** GET openapi.json: one control per request field (a new field appears with no edit to this page). */
async function loadFields() {
  const response = await fetch("openapi.json");
  if (!response.ok) throw new Error(`openapi.json: HTTP ${response.status}`);
  const properties = (await response.json()).components.schemas.SolveRequest.properties;
  state.fields = Object.entries(properties)
    .filter(([name]) => !PAGE_FIELDS.has(name))
    .map(([name, property]) => ({ name, schema: plainSchema(property) }));
  for (const { name, schema } of state.fields) {
    const label = document.createElement("label");
    label.id = `${name}-label`;
    label.title = schema.description || "";
    label.append(schema.title || name, controlFor(name, schema));
    if (MAIN_FIELDS.includes(name)) $("controls").insertBefore(label, $("api-key-label"));
    else $("more").append(label);
  }
}

/** A select for words and switches (first option: not sent), a number input for numbers. */
function controlFor(name, schema) {
  let control;
  if (schema.enum || schema.type === "boolean") {
    control = document.createElement("select");
    const words = schema.enum || [true, false];
    control.add(new Option("default", ""));
    for (const word of words) control.add(new Option(shownValue(word), String(word)));
  } else {
    control = document.createElement("input");
    control.type = "number";
    control.inputMode = schema.type === "integer" ? "numeric" : "decimal";
    control.step = schema.type === "integer" ? "1" : "any";
    if (schema.minimum != null) control.min = String(schema.minimum);
    if (schema.maximum != null) control.max = String(schema.maximum);
  }
  control.id = name;
  control.dataset.type = schema.type || "string";
  return control;
}

function shownValue(value) {
  return value === true ? "on" : value === false ? "off" : String(value);
}

/** Show `model`'s defaults in the empty controls, its caps as maxima, and only the presets it takes. */
function showModelDefaults(model) {
  for (const { name, schema } of state.fields) {
    const control = $(name);
    const known = name in model.defaults ? model.defaults[name] : schema.default;
    if (control.tagName === "SELECT") {
      control.options[0].text = known == null ? "default" : `${shownValue(known)} (default)`;
    } else {
      control.placeholder = known == null ? "" : String(known);
      if (name in model.caps) control.max = String(model.caps[name]);
    }
  }
  const preset = $("preset");
  if (!preset) return;
  const takes = model.presets || []; // a preset the model folder does not list is refused (422)
  for (const option of [...preset.options].slice(1)) option.hidden = option.disabled = !takes.includes(option.value);
  if (!takes.includes(preset.value)) preset.value = "";
  preset.options[0].text = takes.length ? "none" : "none (this model takes no preset)";
}

/** The fields set in the page, typed as the schema says; empty ones are not sent. */
function fieldValues() {
  const values = {};
  for (const { name, schema } of state.fields) {
    const text = $(name).value.trim();
    if (text === "") continue;
    if (schema.type === "boolean") values[name] = text === "true";
    else if (schema.type === "integer" || schema.type === "number") values[name] = Number(text); // the server validates
    else values[name] = text;
  }
  return values;
}

// -- the board ---------------------------------------------------------------------------------------

/** Rebuild the board for `board` ({kind, rows, cols}): Sudoku inputs, or one drawn cell per character. */
function buildBoard(board) {
  state.board = board;
  const el = $("board");
  el.replaceChildren();
  el.dataset.kind = board.kind;
  el.style.setProperty("--rows", String(board.rows));
  el.style.setProperty("--cols", String(board.cols));
  el.setAttribute("aria-label", `${board.kind} board`);
  for (let i = 0; i < board.rows * board.cols; i++) {
    const r = Math.floor(i / board.cols), c = i % board.cols;
    const cell = document.createElement(isSudoku() ? "input" : "div");
    cell.className = "cell";
    cell.dataset.index = String(i);
    cell.setAttribute("aria-label", `row ${r + 1} column ${c + 1}`);
    if (isSudoku()) {
      cell.maxLength = 1;
      cell.inputMode = "numeric";
      cell.autocomplete = "off";
      if (c % 3 === 2 && c < 8) cell.classList.add("box-right");
      if (r % 3 === 2 && r < 8) cell.classList.add("box-bottom");
      cell.addEventListener("input", onCellInput);
      cell.addEventListener("keydown", onCellKey);
      cell.addEventListener("paste", onPaste);
    } else {
      cell.setAttribute("role", "gridcell");
    }
    el.appendChild(cell);
  }
  $("puzzle-text-label").hidden = !isSudoku();
  $("rows-text-label").hidden = isSudoku();
  $("rows-text").rows = Math.min(board.rows, MAX_EDITOR_ROWS); // a taller board scrolls (the board shows it all)
  $("controls").dataset.editor = isSudoku() ? "line" : "rows"; // rows: the settings stack beside the editor
}

function cells() {
  return $("board").querySelectorAll(".cell");
}

/** Show the puzzle and, over it, `board` (the model's: 81 chars for a Sudoku, rows otherwise); null: none. */
function drawBoard(board) {
  if (isSudoku()) drawSudoku(board);
  else drawCharGrid(board);
}

/** The givens, and `board` (81 chars, "." for none) in the other cells. */
function drawSudoku(board) {
  cells().forEach((cell, i) => {
    const given = state.givens[i];
    const shown = given || (board && /[1-9]/.test(board[i]) ? board[i] : "");
    cell.value = shown;
    cell.classList.toggle("given", Boolean(given));
    cell.classList.toggle("model", !given && Boolean(shown));
  });
}

/** Each cell coloured by its character (data-ch): the model's where it answered, else the puzzle's.
 * "model" marks what the model changed; in a maze, "off" marks changes other than marking the path
 * on an open cell, i.e. where the answer breaks the maze. */
function drawCharGrid(board) {
  const maze = state.board.kind === "maze";
  cells().forEach((cell, i) => {
    const r = Math.floor(i / state.board.cols), c = i % state.board.cols;
    const given = (state.rows[r] || "")[c] ?? "";
    const shown = board ? ((board[r] || "")[c] ?? "") : given;
    cell.dataset.ch = shown;
    cell.textContent = maze && shown in MAZE_GLYPHS ? MAZE_GLYPHS[shown] : shown;
    const changed = Boolean(board) && shown !== given;
    cell.classList.toggle("model", changed);
    cell.classList.toggle("off", maze && changed && !(given === MAZE_OPEN && shown === MAZE_PATH));
  });
}

function puzzleString() {
  return state.givens.map((d) => d || ".").join("");
}

/** The puzzle as the API takes it: a Sudoku's 81 characters, or the rows of a maze or grid. */
function puzzleValue() {
  return isSudoku() ? puzzleString() : state.rows;
}

function compact(text) {
  return text.replace(/\s+/g, "");
}

/** Rows of a textarea: one per line; blank lines before and after the board are framing, not rows. */
function rowsOf(text) {
  const rows = text.replace(/\r\n?/g, "\n").split("\n");
  while (rows.length && rows[0] === "") rows.shift();
  while (rows.length && rows[rows.length - 1] === "") rows.pop();
  return rows;
}

/** Load an 81-cell puzzle from text; false if it is not one (whitespace is ignored). */
function loadPuzzle(text) {
  const chars = compact(text);
  if (chars.length !== SUDOKU_CELLS) return false;
  // a stray character is kept and sent as is: the server's 422 then points at its cell
  state.givens = Array.from(chars, (ch) => (ch === "." || ch === "0" ? "" : ch));
  resetResult();
  return true;
}

/** Load a puzzle of the board's task: an 81-character string, or rows (into the textarea too). */
function loadExample(puzzle) {
  if (isSudoku()) {
    loadPuzzle(puzzle);
    return;
  }
  state.rows = Array.isArray(puzzle) ? [...puzzle] : rowsOf(puzzle);
  $("rows-text").value = state.rows.join("\n");
  resetResult();
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
  const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -SUDOKU_SIZE, ArrowDown: SUDOKU_SIZE };
  if (event.key in moves) {
    const next = i + moves[event.key];
    if (next >= 0 && next < SUDOKU_CELLS) cells()[next].focus();
    event.preventDefault();
  } else if (event.key === "Enter") {
    solve();
  }
}

function onPaste(event) {
  const text = (event.clipboardData || window.clipboardData).getData("text");
  if (loadPuzzle(text)) event.preventDefault(); // a whole puzzle: fill the grid, not one cell
}

// -- examples ----------------------------------------------------------------------------------------

/** The example menu for the board's task: the built-in Sudokus, and the selected model's own example. */
function fillExamples() {
  const model = state.model;
  state.examples = isSudoku() ? [...SUDOKU_EXAMPLES] : [];
  const own = model && model.example != null ? model.example : null;
  if (own !== null && !state.examples.some(([, p]) => same(normalized(p), normalized(own)))) {
    state.examples.push([`${model.name}'s example`, own]);
  }
  const select = $("example");
  select.replaceChildren(new Option("choose…", ""));
  state.examples.forEach(([name], i) => select.add(new Option(name, String(i))));
  syncExampleMenu();
}

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** A puzzle as the editor holds it, to compare with the examples: a Sudoku's 81 cells, a grid's rows. */
function normalized(puzzle) {
  if (isSudoku()) return compact(String(puzzle)).replace(/0/g, ".");
  return Array.isArray(puzzle) ? puzzle : rowsOf(String(puzzle));
}

/** Show in the menu which example is on the board, or none once it is edited. */
function syncExampleMenu() {
  const current = normalized(puzzleValue());
  const at = state.examples.findIndex(([, p]) => same(normalized(p), current));
  $("example").value = at >= 0 ? String(at) : "";
}

// -- results, errors and the chart -------------------------------------------------------------------

function resetResult() {
  state.residuals = [];
  drawBoard(null);
  if (isSudoku()) $("puzzle-text").value = puzzleString(); // the rows textarea is never rewritten while typed in
  showError(null);
  for (const id of ["status", "iterations", "valid", "verified", "agreement", "time"]) {
    $(id).textContent = "–";
    $(id).className = "";
  }
  syncExampleMenu();
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
  $("model").disabled = busy;
}

/** An API error ({code, message, field, cells}) next to the cells or field at fault; null clears. */
function showError(error) {
  const box = $("error");
  cells().forEach((cell) => {
    cell.classList.remove("bad");
    cell.removeAttribute("title");
  });
  for (const id of ["puzzle-text", "rows-text", ...state.fields.map((f) => f.name)]) $(id).classList.remove("bad");
  if (!error) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.hidden = false;
  box.textContent = error.message;
  for (const [r, c] of error.cells || []) {
    if (c >= state.board.cols) continue; // a cell outside the model's board: the message names it
    const cell = cells()[r * state.board.cols + c];
    if (!cell) continue;
    cell.classList.add("bad");
    cell.title = error.message;
  }
  const input = fieldInput((error.field || "").split(".")[0]);
  if (input) $(input).classList.add("bad");
}

/** The error to show while the Sudoku field holds no puzzle (the board keeps the last one), else null.
 * Rows of a maze or grid are the puzzle itself: the server judges them and names the cells at fault. */
function puzzleTextError() {
  if (!isSudoku()) return null;
  const n = compact($("puzzle-text").value).length;
  if (n === SUDOKU_CELLS) return null;
  const message = `the puzzle field has ${n} characters, not ${SUDOKU_CELLS}: type or paste ${SUDOKU_CELLS} (1-9, '.' or 0 for blanks)`;
  return { message, field: "puzzle" };
}

function showResult(result) {
  drawBoard(result.answer);
  $("status").textContent = result.status;
  $("status").className = `status-${result.status}`;
  const most = Math.max(...result.iterations);
  const conv = result.iterations_to_convergence;
  $("iterations").textContent = conv == null ? `${most}` : `${most} (converged at ${conv})`;
  const valid = result.valid == null ? "n/a" : result.valid ? "yes" : "no"; // null: the task has no rules
  $("valid").textContent = valid;
  $("valid").className = valid === "n/a" ? "" : valid;
  const restarts = `${result.restarts} restart${result.restarts === 1 ? "" : "s"}`;
  $("verified").textContent = result.verified == null ? "n/a" : `${result.verified ? "yes" : "no"} (${restarts})`;
  $("verified").className = result.verified == null ? "" : result.verified ? "yes" : "no";
  $("agreement").textContent = `${Math.round(result.agreement * 100)}% of ${result.iterations.length} (${state.aggregate})`;
  const t = result.timings, ms = (v) => `${v.toFixed(0)} ms`;
  $("time").textContent = `${ms(t.queued_ms + t.compute_ms)} (${ms(t.queued_ms)} queued, ${ms(t.compute_ms)} computing)`;
  $("answer").textContent = Array.isArray(result.answer) ? result.answer.join("\n") : result.answer;
  const last = state.residuals[state.residuals.length - 1];
  $("live").textContent = last && last[2] != null ? `· final residual ${last[2].toPrecision(3)}` : "";
}

function drawChart() {
  const svg = $("chart");
  const W = 320, H = 140, pad = { l: 34, r: 6, t: 8, b: 18 };
  const pts = state.residuals.filter(([, , r]) => r != null && r > 0);
  svg.dataset.points = String(pts.length);
  if (!pts.length) {
    svg.innerHTML = `<text x="${W / 2}" y="${H / 2}" text-anchor="middle" class="axis">no iterations yet</text>`;
    return;
  }
  const logs = pts.map(([, , r]) => Math.log10(r));
  let lo = Math.floor(Math.min(...logs)), hi = Math.ceil(Math.max(...logs));
  if (hi === lo) hi = lo + 1;
  const maxIt = Math.max(...pts.map(([, it]) => it), 2);
  const x = (it) => pad.l + ((it - 1) / Math.max(maxIt - 1, 1)) * (W - pad.l - pad.r);
  const y = (lg) => pad.t + ((hi - lg) / (hi - lo)) * (H - pad.t - pad.b);
  // one line per trajectory: a restart starts again at iteration 1
  const lines = new Map();
  pts.forEach(([t, it], k) => lines.set(t, [...(lines.get(t) || []), `${x(it).toFixed(1)},${y(logs[k]).toFixed(1)}`]));
  const polylines = [...lines.values()].map((line) => `<polyline points="${line.join(" ")}" class="residual"/>`);
  const last = pts[pts.length - 1];
  svg.innerHTML = `
    <line x1="${pad.l}" y1="${pad.t}" x2="${pad.l}" y2="${H - pad.b}" class="frame"/>
    <line x1="${pad.l}" y1="${H - pad.b}" x2="${W - pad.r}" y2="${H - pad.b}" class="frame"/>
    <text x="${pad.l - 4}" y="${pad.t + 8}" text-anchor="end" class="axis">1e${hi}</text>
    <text x="${pad.l - 4}" y="${H - pad.b}" text-anchor="end" class="axis">1e${lo}</text>
    <text x="${pad.l}" y="${H - 4}" class="axis">1</text>
    <text x="${W - pad.r}" y="${H - 4}" text-anchor="end" class="axis">${maxIt}</text>
    ${polylines.join("")}
    <circle cx="${x(last[1]).toFixed(1)}" cy="${y(logs[logs.length - 1]).toFixed(1)}" r="2.5" class="dot"/>`;
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
    $("live").textContent = `· ${progressText(ev)}`;
    $("iterations").textContent = `${ev.iteration}…`;
    drawChart();
  });
}

/** An event's trajectory (and restart), iteration and residual, and how the trajectory ended if it did. */
function progressText(ev) {
  const residual = ev.residual == null ? "–" : ev.residual.toPrecision(3);
  const which = `trajectory ${ev.trajectory}${ev.restart ? ` (restart ${ev.restart})` : ""}`;
  let text = `${which}, iteration ${ev.iteration}, residual ${residual}`;
  if (ev.ended) text += `, ended: ${ev.ended}`;
  if (ev.verified != null) text += ev.verified ? ", verified" : ", not verified";
  return text;
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
  const body = { puzzle: puzzleValue(), stream: true, ...fieldValues() };
  if (state.model) body.model = state.model.name;
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
    loadModels();
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
  state.aggregate = body.aggregate || (state.model && state.model.defaults.aggregate) || "default";
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
        state.residuals.push([data.trajectory, data.iteration, data.residual]);
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

// -- models ------------------------------------------------------------------------------------------

/** GET /v1/models: fill the model menu, keeping the selected model if it is still served. */
async function loadModels() {
  try {
    const response = await fetch("v1/models", { headers: authHeaders() });
    if (response.status === 401 || response.status === 403) {
      $("model-name").textContent = "this server needs an API key: enter it above";
      return;
    }
    if (!response.ok) return;
    const listed = await response.json();
    state.models = listed.models || [];
    if (!state.models.length) return;
    const menu = $("model");
    // Redis mode lists a model whose workers are all gone with 0 workers: its solves get 503 until one is back
    const label = (m) => `${m.name} (${m.task})${m.workers === 0 ? ", no live worker" : ""}`;
    menu.replaceChildren(...state.models.map((m) => new Option(label(m), m.name)));
    $("model-label").hidden = false;
    const named = (name) => name && state.models.find((m) => m.name === name);
    selectModel(named(state.model && state.model.name) || named(listed.default) || state.models[0], false);
  } catch (_) {
    /* the playground still works with the server's defaults */
  }
}

/** Make `model` the one solves go to. Its board replaces the page's when the shape differs, and then
 * (or always, when the user picked it: `chosen`) its example is loaded into the editor. */
function selectModel(model, chosen) {
  state.model = model;
  $("model").value = model.name;
  $("model-name").textContent = `model: ${model.name} (${model.arch.parameters ?? "?"} parameters)`;
  showModelDefaults(model);
  const board = model.board || SUDOKU_BOARD;
  const reshaped = !same(
    [board.kind, board.rows, board.cols],
    [state.board.kind, state.board.rows, state.board.cols],
  );
  if (reshaped) buildBoard({ kind: board.kind, rows: board.rows, cols: board.cols });
  fillExamples();
  if ((reshaped || chosen) && model.example != null) loadExample(model.example);
  else if (reshaped) resetResult(); // a board of the new shape, empty
}

function init() {
  buildBoard(SUDOKU_BOARD);
  fillExamples();
  const select = $("example");
  select.addEventListener("change", () => select.value && loadExample(state.examples[Number(select.value)][1]));
  $("model").addEventListener("change", (e) => {
    const model = state.models.find((m) => m.name === e.target.value);
    if (model) selectModel(model, true);
  });
  $("puzzle-text").addEventListener("input", (e) => {
    if (!loadPuzzle(e.target.value)) showError(puzzleTextError());
  });
  $("rows-text").addEventListener("input", (e) => {
    state.rows = rowsOf(e.target.value);
    resetResult();
  });
  $("solve").addEventListener("click", solve);
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("more-toggle").addEventListener("click", () => {
    const open = $("more").hidden;
    $("more").hidden = !open;
    $("more-toggle").setAttribute("aria-expanded", String(open));
    $("more-toggle").textContent = open ? "More ▾" : "More ▸";
  });
  $("clear").addEventListener("click", () => {
    state.givens = Array(SUDOKU_CELLS).fill("");
    state.rows = [];
    $("rows-text").value = "";
    resetResult();
  });
  loadExample(SUDOKU_EXAMPLES[0][1]);
  initApiKey();
  loadFields() // the controls first: a model's defaults are shown in them
    .catch((err) => showError({ message: `the request fields could not be read: ${err.message}` }))
    .finally(loadModels);
}

document.addEventListener("DOMContentLoaded", init);
