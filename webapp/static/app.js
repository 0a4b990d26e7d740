// Spool demo chat — and the reference browser client.
//
// The one idea worth copying: an answer is a log on the server, and the page
// is just a reader that remembers the id of the last event it rendered. Every
// reconnect (EventSource's own, via Last-Event-ID, or ours after a reload, via
// `after=`) asks for "everything after N", so nothing is lost or doubled.
"use strict";

const STORE_KEY = "spool.chat.v1";
const API_KEY_KEY = "spool.apiKey";
const PREFS_KEY = "spool.prefs.v1";
const SAVE_DELAY_MS = 150;          // coalesce localStorage writes while tokens stream
const REATTACH_BASE_MS = 1000;      // first manual retry after EventSource gives up
const REATTACH_MAX_MS = 15000;
const NEAR_BOTTOM_PX = 96;          // "the user is reading the latest answer"
const MAX_PROMPT_PX = 200;
const EVENT_NAMES = ["status", "delta", "tool_call", "notice", "done", "cancelled"];
const STATE_LABELS = {
  sending: "Sending…", queued: "Queued…", in_progress: "Thinking…", stopping: "Stopping…",
  reconnecting: "Reconnecting…", stopped: "Stopped", abandoned: "Abandoned",
  error: "Error", lost: "Unavailable",
};

const $ = (id) => document.getElementById(id);
const ui = {
  provider: $("provider"), model: $("model"), newChat: $("new-chat"), settings: $("settings"),
  apiKey: $("api-key"), mockOptions: $("mock-options"), settingsError: $("settings-error"),
  banner: $("banner"), conversation: $("conversation"), empty: $("empty"),
  composer: $("composer"), prompt: $("prompt"), send: $("send"), stop: $("stop"),
};

let turns = loadTurns();       // the conversation, exactly as persisted
let models = [];               // [{provider, model}] from GET /v1/models
const views = new Map();       // turn -> its DOM nodes
const streams = new Map();     // turn -> {es, timer, attempts}
let saveTimer = 0;

// ---------------------------------------------------------------- storage

function loadTurns() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORE_KEY) || "null");
    return Array.isArray(saved?.turns) ? saved.turns : [];
  } catch {
    return []; // a corrupt entry must not brick the page
  }
}

/** Persist soon. Text and lastId live in one object, so any snapshot is consistent. */
function scheduleSave() {
  if (!saveTimer) saveTimer = setTimeout(saveNow, SAVE_DELAY_MS);
}

function saveNow() {
  clearTimeout(saveTimer);
  saveTimer = 0;
  try {
    localStorage.setItem(STORE_KEY, JSON.stringify({ turns }));
  } catch {
    // Quota or private mode: the chat still works, it just won't survive a reload.
  }
}

function loadPrefs() {
  try { return JSON.parse(localStorage.getItem(PREFS_KEY) || "{}") || {}; } catch { return {}; }
}

// ---------------------------------------------------------------- HTTP

/** Call the JSON API; resolves to {ok, status, body}, rejects only on network failure. */
async function api(path, { method = "GET", json } = {}) {
  const headers = {};
  if (json !== undefined) headers["Content-Type"] = "application/json";
  const key = ui.apiKey.value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  const res = await fetch(path, {
    method, headers, body: json === undefined ? undefined : JSON.stringify(json),
  });
  let body = null;
  try { body = await res.json(); } catch { /* 204s and non-JSON bodies */ }
  return { ok: res.ok, status: res.status, body };
}

function errorText(res) {
  if (res.status === 401) return "This server needs an API key. Enter it under Settings, then retry.";
  return res.body?.error?.message || `The server answered ${res.status}.`;
}

function showBanner(message) {
  ui.banner.textContent = message || "";
  ui.banner.hidden = !message;
}

function askForKey() {
  ui.settings.open = true;
  ui.apiKey.focus();
}

// ---------------------------------------------------------------- models

async function loadModels() {
  let res = null;
  try { res = await api("/v1/models"); } catch { /* reported below */ }
  if (res?.ok) {
    showBanner("");
    models = (res.body?.data || []).map((m) => {
      const [provider, ...rest] = String(m.id).split("/");
      return { provider, model: rest.join("/") };
    });
  } else {
    showBanner(res ? errorText(res) : "Cannot reach the server. Is `make run` still running?");
    if (res?.status === 401) askForKey();
    models = [];
  }
  fillProviders(loadPrefs());
}

function fillProviders(prefs) {
  const providers = [...new Set(models.map((m) => m.provider))];
  const options = providers.map((p) => new Option(p, p));
  // Without a model list (e.g. no key yet), let the server pick its default provider.
  if (!options.length) options.push(new Option("server default", ""));
  ui.provider.replaceChildren(...options);
  if (providers.includes(prefs.provider)) ui.provider.value = prefs.provider;
  fillModels(prefs.model);
}

function fillModels(preferred) {
  const names = models.filter((m) => m.provider === ui.provider.value).map((m) => m.model);
  const options = names.map((n) => new Option(n, n));
  if (!options.length) options.push(new Option("default", ""));
  ui.model.replaceChildren(...options);
  if (names.includes(preferred)) ui.model.value = preferred;
}

function savePrefs() {
  localStorage.setItem(PREFS_KEY, JSON.stringify({
    provider: ui.provider.value, model: ui.model.value,
  }));
}

// ---------------------------------------------------------------- rendering

function clone(id) {
  return $(id).content.firstElementChild.cloneNode(true);
}

function renderAll() {
  ui.conversation.querySelectorAll(".msg").forEach((el) => el.remove());
  views.clear();
  turns.forEach((turn) => ui.conversation.append(renderTurn(turn)));
  refreshChrome();
  scrollToEnd(true);
}

function renderTurn(turn) {
  if (turn.role === "user") {
    const el = clone("tpl-user");
    el.querySelector(".bubble").textContent = turn.content;
    views.set(turn, { el });
    return el;
  }
  const el = clone("tpl-assistant");
  const textNode = document.createTextNode(turn.text || "");
  el.querySelector(".text").append(textNode);
  const view = { el, textNode };
  views.set(turn, view);
  el.querySelector(".retry").addEventListener("click", () => retry(turn));
  (turn.toolCalls || []).forEach((call) => addToolCard(view, call));
  updateTurn(turn);
  return el;
}

function addToolCard(view, call) {
  const card = clone("tpl-tool");
  card.querySelector(".tool-name").textContent = call.name;
  card.querySelector(".tool-args").textContent = JSON.stringify(call.arguments ?? {}, null, 2);
  view.el.querySelector(".tools").append(card);
}

/** Sync everything but the text (which deltas append directly) with the turn. */
function updateTurn(turn) {
  const view = views.get(turn);
  if (!view) return;
  const { el } = view;
  const streaming = turn.status === "streaming";
  const label = streaming ? (STATE_LABELS[turn.phase] || "") : (STATE_LABELS[turn.status] || "");
  el.dataset.status = turn.status;
  if (turn.id) el.dataset.generationId = turn.id; // lets a reader (or a test) find the record
  el.querySelector("[data-state]").textContent = label;
  el.querySelector(".answer").setAttribute("aria-busy", String(streaming));
  el.querySelector(".cursor").hidden = !streaming;
  const notice = el.querySelector(".notice");
  notice.textContent = turn.notice || "";
  notice.hidden = !turn.notice;
  const error = el.querySelector(".error");
  error.hidden = !turn.error;
  if (turn.error) el.querySelector(".error-text").textContent = turn.error;
  renderStats(el.querySelector(".stats"), turn.stats);
}

function renderStats(dl, stats) {
  dl.hidden = !stats;
  if (!stats) return;
  const rows = [
    ["TTFT", stats.ttft_ms == null ? "–" : `${Math.round(stats.ttft_ms)} ms`],
    ["Speed", stats.tokens_per_second == null ? "–" : `${formatRate(stats.tokens_per_second)} tok/s`],
    ["Tokens", stats.output_tokens ?? "–"],
    ["Finish", stats.finish_reason ?? "–"],
  ];
  dl.replaceChildren(...rows.map(([name, value]) => {
    const row = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = name;
    dd.textContent = String(value);
    dd.dataset.stat = name.toLowerCase();
    row.append(dt, dd);
    return row;
  }));
}

function formatRate(value) {
  const n = Number(value);
  return n >= 100 ? n.toFixed(0) : n.toFixed(1); // decimals only where they mean something
}

/** Show Send or Stop, and the empty-state hint, to match the conversation. */
function refreshChrome() {
  const busy = Boolean(activeTurn());
  ui.send.hidden = busy;
  ui.stop.hidden = !busy;
  ui.empty.hidden = turns.length > 0;
}

function isNearBottom() {
  const c = ui.conversation;
  return c.scrollHeight - c.scrollTop - c.clientHeight < NEAR_BOTTOM_PX;
}

// Only follow the stream if the reader is already at the end; never yank them back up.
function scrollToEnd(force = false) {
  if (force || isNearBottom()) ui.conversation.scrollTop = ui.conversation.scrollHeight;
}

// ---------------------------------------------------------------- streaming

function activeTurn() {
  return turns.find((t) => t.role === "assistant" && t.status === "streaming");
}

/** Apply one event of the generation's log to the turn (and the page). */
function applyEvent(turn, name, data) {
  const view = views.get(turn);
  const follow = isNearBottom();
  if (name === "status") {
    turn.phase = data.status;
  } else if (name === "delta") {
    turn.text += data.text;
    if (turn.phase !== "stopping") turn.phase = "streaming";
    turn.notice = "";
    view?.textNode.appendData(data.text);
  } else if (name === "tool_call") {
    turn.toolCalls.push(data);
    if (view) addToolCard(view, data);
  } else if (name === "notice") {
    turn.notice = data.message;
  } else if (name === "done") {
    turn.status = "done";
    turn.stats = {
      ...(data.metrics || {}), output_tokens: data.usage?.output_tokens,
      finish_reason: data.finish_reason,
    };
  } else if (name === "error") {
    turn.status = "error";
    turn.error = `${data.message || "The generation failed."} (${data.type || "error"})`;
  } else if (name === "cancelled") {
    turn.status = data.reason === "abandoned" ? "abandoned" : "stopped";
  }
  if (turn.status !== "streaming") detach(turn);
  updateTurn(turn);
  refreshChrome();
  scheduleSave();
  if (follow) scrollToEnd(true);
}

/** Follow the turn's generation from the last event we rendered. */
function attach(turn) {
  detach(turn);
  const url = new URL(turn.streamUrl, location.href);
  // After a reload EventSource has no Last-Event-ID of its own; `after` carries ours.
  if (turn.lastId) url.searchParams.set("after", String(turn.lastId));
  const es = new EventSource(url);
  const link = { es, timer: 0, attempts: streams.get(turn)?.attempts || 0 };
  streams.set(turn, link);

  const onEvent = (event) => {
    const seq = Number(event.lastEventId);
    // EventSource's own reconnects resume by Last-Event-ID; this guard keeps a
    // replayed event (if a server ever resent one) from doubling the text.
    if (seq && seq <= turn.lastId) return;
    let data;
    try { data = JSON.parse(event.data); } catch { return; }
    if (seq) turn.lastId = seq;
    applyEvent(turn, event.type, data);
  };
  EVENT_NAMES.forEach((name) => es.addEventListener(name, onEvent));
  es.addEventListener("open", () => {
    link.attempts = 0;
    if (turn.phase === "reconnecting") setPhase(turn, turn.lastPhase);
  });
  // The server's `error` event is a MessageEvent with data; EventSource's own
  // connection failure is a plain Event. Same listener, very different meaning.
  es.addEventListener("error", (event) => {
    if (event instanceof MessageEvent && event.data) onEvent(event);
    else onConnectionLost(turn, es);
  });
}

function detach(turn) {
  const link = streams.get(turn);
  if (!link) return;
  link.es.close();
  clearTimeout(link.timer);
  streams.delete(turn);
}

function setPhase(turn, phase) {
  if (phase !== "reconnecting") turn.lastPhase = phase;
  turn.phase = phase;
  updateTurn(turn);
}

function onConnectionLost(turn, es) {
  if (turn.status !== "streaming" || streams.get(turn)?.es !== es) return;
  if (turn.phase !== "reconnecting") turn.lastPhase = turn.phase;
  setPhase(turn, "reconnecting");
  // CONNECTING: the browser retries by itself, sending Last-Event-ID.
  // CLOSED: it gave up (an HTTP error status); ask the server what happened.
  if (es.readyState === EventSource.CLOSED) reconcile(turn);
}

/** EventSource gave up: find out whether the answer still exists, then re-attach. */
async function reconcile(turn) {
  const link = streams.get(turn);
  if (!link) return;
  const delay = Math.min(REATTACH_MAX_MS, REATTACH_BASE_MS * 2 ** link.attempts);
  link.attempts += 1;
  let res = null;
  try { res = await api(`/v1/generations/${encodeURIComponent(turn.id)}`); } catch { /* offline */ }
  if (streams.get(turn) !== link) return; // stopped or re-attached meanwhile
  if (res && (res.status === 404 || res.status === 410)) {
    detach(turn);
    turn.status = "lost";
    turn.error = "This answer is no longer available on the server.";
    updateTurn(turn);
    refreshChrome();
    scheduleSave();
    return;
  }
  if (res?.status === 401) askForKey();
  link.timer = setTimeout(() => attach(turn), delay);
}

// ---------------------------------------------------------------- actions

/** The history the model sees: every user message and every answer with text. */
function historyBefore(index) {
  return turns.slice(0, index).flatMap((t) => {
    if (t.role === "user") return [{ role: "user", content: t.content }];
    return t.text ? [{ role: "assistant", content: t.text }] : [];
  });
}

function readMockOptions() {
  const raw = ui.mockOptions.value.trim();
  ui.settingsError.hidden = true;
  // "" is the server's default provider, which is the mock one on a fresh machine.
  if (!raw || !["mock", ""].includes(ui.provider.value)) return {};
  try {
    const value = JSON.parse(raw);
    if (value && typeof value === "object" && !Array.isArray(value)) return value;
  } catch { /* reported below */ }
  ui.settingsError.textContent = "Mock options must be a JSON object.";
  ui.settingsError.hidden = false;
  ui.settings.open = true;
  ui.mockOptions.focus();
  return null;
}

/** Start a new answer at `index`, conditioned on everything before it. */
async function generate(index) {
  const mock = readMockOptions();
  if (mock === null) return;
  const turn = {
    role: "assistant", id: null, streamUrl: null, text: "", lastId: 0, status: "streaming",
    phase: "sending", toolCalls: [], stats: null, error: "", notice: "",
  };
  turns.splice(index, 0, turn);
  ui.conversation.insertBefore(renderTurn(turn), views.get(turns[index + 1])?.el || null);
  refreshChrome();
  scrollToEnd(true);
  const body = { messages: historyBefore(index) };
  if (ui.provider.value) body.provider = ui.provider.value;
  if (ui.model.value) body.model = ui.model.value;
  if (Object.keys(mock).length) body.mock = mock;
  let res;
  try {
    res = await api("/v1/generations", { method: "POST", json: body });
  } catch {
    res = { ok: false, status: 0, body: { error: { message: "Cannot reach the server." } } };
  }
  if (res.ok) {
    const phase = turn.stopWanted ? "stopping" : "queued";
    Object.assign(turn, { id: res.body.id, streamUrl: res.body.stream_url, phase });
    attach(turn);
    if (turn.stopWanted) stop();
  } else {
    Object.assign(turn, { status: "error", error: errorText(res) });
    if (res.status === 401) askForKey();
  }
  updateTurn(turn);
  refreshChrome();
  saveNow();
}

function send() {
  const content = ui.prompt.value.trim();
  if (!content || activeTurn()) return;
  turns.push({ role: "user", content });
  ui.conversation.append(renderTurn(turns.at(-1)));
  ui.prompt.value = "";
  growPrompt();
  generate(turns.length);
}

function retry(turn) {
  if (activeTurn()) return;
  const index = turns.indexOf(turn);
  if (index < 0) return;
  detach(turn);
  views.get(turn)?.el.remove();
  views.delete(turn);
  turns.splice(index, 1);
  generate(index);
}

async function stop() {
  const turn = activeTurn();
  if (!turn) return;
  setPhase(turn, "stopping");
  if (!turn.id) { turn.stopWanted = true; return; } // generate() stops it once it has an id
  try {
    // 202 means the `cancelled` event is on its way; 409 means a terminal
    // event already is. Either way the stream, not this reply, ends the turn.
    const res = await api(`/v1/generations/${encodeURIComponent(turn.id)}/cancel`, { method: "POST" });
    if (!res.ok && res.status !== 409) turn.notice = errorText(res);
  } catch {
    turn.notice = "Could not reach the server to stop this answer. Press Stop to try again.";
  }
  updateTurn(turn);
  ui.prompt.focus();
}

function newChat() {
  const turn = activeTurn();
  if (turn?.id) api(`/v1/generations/${encodeURIComponent(turn.id)}/cancel`, { method: "POST" })
    .catch(() => {}); // best effort: nobody will read the rest
  [...streams.keys()].forEach(detach);
  turns = [];
  saveNow();
  renderAll();
  ui.prompt.focus();
}

function growPrompt() {
  ui.prompt.style.height = "auto";
  ui.prompt.style.height = `${Math.min(ui.prompt.scrollHeight, MAX_PROMPT_PX)}px`;
}

// ---------------------------------------------------------------- wiring

function wire() {
  ui.composer.addEventListener("submit", (e) => { e.preventDefault(); send(); });
  ui.prompt.addEventListener("keydown", (e) => {
    // isComposing: Enter that confirms an IME composition must not send.
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  ui.prompt.addEventListener("input", growPrompt);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && activeTurn()) { e.preventDefault(); stop(); }
  });
  ui.stop.addEventListener("click", stop);
  ui.newChat.addEventListener("click", newChat);
  ui.provider.addEventListener("change", () => { fillModels(); savePrefs(); });
  ui.model.addEventListener("change", savePrefs);
  // The form exists so the password field is in one; Enter there just applies the key.
  $("settings-form").addEventListener("submit", (e) => { e.preventDefault(); ui.apiKey.blur(); });
  ui.apiKey.addEventListener("change", () => {
    localStorage.setItem(API_KEY_KEY, ui.apiKey.value.trim());
    loadModels();
  });
  addEventListener("pagehide", saveNow);
}

function start() {
  ui.apiKey.value = localStorage.getItem(API_KEY_KEY) || "";
  const mock = new URLSearchParams(location.search).get("mock");
  if (mock) ui.mockOptions.value = mock;
  wire();
  // A POST that was in flight at reload never told us its id: nothing to resume.
  turns.forEach((t) => {
    if (t.role === "assistant" && t.status === "streaming" && !t.streamUrl) {
      Object.assign(t, { status: "error", error: "The request was interrupted before the server answered." });
    }
  });
  renderAll();
  turns.filter((t) => t.status === "streaming").forEach(attach);
  loadModels();
  ui.prompt.focus();
}

start();
