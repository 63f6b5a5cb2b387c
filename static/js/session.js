// The session page: the node list, live session events, and one xterm.js terminal per
// opened node (kept alive while hidden, so switching nodes loses nothing).
// The terminal protocol is described in docs/protocol.md.
// Relative paths rather than an import map: the CSP allows no inline script.
import { Terminal } from "../vendor/xterm/lib/xterm.mjs";
import { FitAddon } from "../vendor/xterm-addon-fit/lib/addon-fit.mjs";

const data = JSON.parse(document.getElementById("session-data").textContent);
const sessionId = data.id;
const api = `/api/sessions/${encodeURIComponent(sessionId)}`;
const wsBase = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
const $ = (id) => document.getElementById(id);

const nodes = new Map(); // name -> node data from the API
const terminals = new Map(); // name -> NodeTerminal
let selected = null;
let ended = false;
// Exposed for tests and for poking around in the console.
window.pwd = { terminals, nodes };

// --- the API ------------------------------------------------------------------------

async function call(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { Accept: "application/json", "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const payload = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(payload.error?.message || `the server answered ${response.status}`);
    error.status = response.status;
    error.code = payload.error?.code;
    throw error;
  }
  return payload;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

// --- one terminal per node ----------------------------------------------------------

// Replies xterm.js sends on its own: device attributes, cursor and mode reports.
const REPORT = /^\x1b(\[[?>=]?[\d;]*\$?[a-zA-Z]|\][^\x07\x1b]*(\x07|\x1b\\)|P[^\x1b]*\x1b\\)$/;

const FINAL_CODES = new Map([
  [4404, "This node does not exist any more."],
  [4410, "This node is gone."],
]);

class NodeTerminal {
  constructor(name) {
    this.name = name;
    this.element = document.createElement("div");
    this.element.className = "terminal-host";
    this.element.hidden = true;
    $("terminals").append(this.element);
    this.term = new Terminal({
      cursorBlink: true,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
      fontSize: 14,
      scrollback: 5000,
      rightClickSelectsWord: true,
      macOptionIsMeta: true,
      theme: { background: "#0b1220", foreground: "#dbe2ee", cursor: "#8fd3ff" },
    });
    this.fit = new FitAddon();
    this.term.loadAddon(this.fit);
    this.term.open(this.element);
    this.term.attachCustomKeyEventHandler((event) => this.onKey(event));
    this.term.onData((text) => {
      // Every tab's xterm.js answers a program's terminal queries (vim asks several);
      // only the tab being used answers, or the shell would get the answers N times.
      if (REPORT.test(text) && !this.focused()) return;
      this.send({ type: "input", data: text });
    });
    this.term.onResize(({ cols, rows }) => this.send({ type: "resize", cols, rows }));
    this.state = "connecting";
    this.attempt = 0;
    this.received = 0;
    this.processed = 0;
    this.acked = 0;
    this.ackTimer = null;
    this.final = false;
    this.observer = new ResizeObserver(() => this.refit());
    this.observer.observe(this.element);
    this.connect();
  }

  setState(state, text) {
    this.state = state;
    this.stateText = text;
    if (selected === this.name) renderConnection();
  }

  connect() {
    clearTimeout(this.retryTimer);
    const path = `/ws/sessions/${encodeURIComponent(sessionId)}/nodes/${encodeURIComponent(this.name)}/terminal/`;
    const ws = new WebSocket(wsBase + path);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.received = this.processed = this.acked = 0;
    this.setState("connecting", this.attempt ? "Reconnecting…" : "Connecting…");
    ws.onopen = () => {
      this.refit(true);
    };
    ws.onmessage = (event) => {
      if (ws !== this.ws) return;
      if (typeof event.data === "string") {
        this.onControl(JSON.parse(event.data));
        return;
      }
      const bytes = new Uint8Array(event.data);
      this.received += bytes.length;
      this.term.write(bytes, () => this.onProcessed(ws, bytes.length));
    };
    ws.onclose = (event) => {
      if (ws !== this.ws || this.disposed) return;
      const final = FINAL_CODES.get(event.code);
      if (final || ended) {
        this.final = true;
        this.setState("closed", ended ? "The session has ended." : final);
        return;
      }
      // Back off (0.5 s doubling to 10 s, with jitter) so a restarting server is not hammered.
      const delay = Math.min(10000, 500 * 2 ** this.attempt) * (0.75 + Math.random() / 2);
      this.attempt += 1;
      this.setState("offline", `Connection lost; reconnecting in ${Math.ceil(delay / 1000)} s…`);
      this.retryTimer = setTimeout(() => this.connect(), delay);
    };
  }

  onControl(message) {
    if (message.type === "status" && message.state === "connected") {
      this.attempt = 0;
      this.setState("connected", "Connected");
      this.refit(true);
    } else if (message.type === "status" && message.state === "resync") {
      this.setState("connected", "Connected (caught up after a burst of output)");
    } else if (message.type === "error") {
      this.setState(this.state, message.message);
    }
    // "ping" needs no answer: it only keeps proxies from closing an idle connection.
  }

  onProcessed(ws, length) {
    // Acknowledge what xterm.js has drawn, so the server never has more than a window
    // of output in flight and Ctrl-C shows up at once even during a flood.
    this.processed += length;
    if (ws !== this.ws || this.ackTimer) return;
    const flush = () => {
      this.ackTimer = null;
      if (ws === this.ws && this.processed > this.acked) {
        this.acked = this.processed;
        this.send({ type: "ack", bytes: this.processed });
      }
    };
    if (this.processed - this.acked >= 32768) flush();
    else this.ackTimer = setTimeout(flush, 50);
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
    }
  }

  onKey(event) {
    if (event.type !== "keydown") return true;
    const mod = event.ctrlKey || event.metaKey;
    if (mod && event.shiftKey && event.code === "KeyC") {
      copyText(this.term.getSelection());
      event.preventDefault();
      return false;
    }
    if (mod && event.shiftKey && event.code === "KeyV") {
      // Leave it to the browser: its paste event reaches xterm.js, no permission prompt.
      return false;
    }
    if (event.metaKey && event.code === "KeyC" && this.term.hasSelection()) return false;
    if (event.key === "F6") {
      event.preventDefault();
      $("panel").focus();
      return false;
    }
    if (event.altKey && !mod && /^Digit[1-9]$/.test(event.code)) {
      const name = `node${event.code.slice(5)}`;
      if (nodes.has(name)) {
        event.preventDefault();
        select(name);
        return false;
      }
    }
    return true;
  }

  refit(force = false) {
    if (this.element.hidden || !this.element.clientWidth) return;
    const before = [this.term.cols, this.term.rows].join("x");
    try {
      this.fit.fit();
    } catch {
      return;
    }
    // onResize only fires on a change; a new connection needs the size regardless.
    if (force && before === [this.term.cols, this.term.rows].join("x")) {
      this.send({ type: "resize", cols: this.term.cols, rows: this.term.rows });
    }
  }

  focused() {
    return document.hasFocus() && this.element.contains(document.activeElement);
  }

  show() {
    this.element.hidden = false;
    this.refit();
    this.term.focus();
  }

  hide() {
    this.element.hidden = true;
  }

  dispose() {
    this.disposed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.ackTimer);
    this.observer.disconnect();
    if (this.ws) this.ws.close(1000);
    this.term.dispose();
    this.element.remove();
  }
}

async function copyText(text) {
  if (!text) return;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Without a secure context the async clipboard is missing; the old way still works.
    const area = document.createElement("textarea");
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
}

// --- the node list ------------------------------------------------------------------

function renderNodes() {
  const list = $("nodes");
  list.replaceChildren();
  for (const node of nodes.values()) {
    const item = document.createElement("li");
    item.className = `node ${node.status}${node.name === selected ? " selected" : ""}`;
    const open = document.createElement("button");
    open.type = "button";
    open.className = "node-open";
    open.setAttribute("aria-current", node.name === selected ? "true" : "false");
    open.innerHTML = `<span class="node-name"></span><span class="node-ip"></span><span class="node-status"></span>`;
    open.querySelector(".node-name").textContent = node.name;
    open.querySelector(".node-ip").textContent = node.ip || "no IP";
    open.querySelector(".node-status").textContent = node.status;
    open.addEventListener("click", () => select(node.name));
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "node-remove";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove ${node.name}`);
    remove.addEventListener("click", () => removeNode(node.name));
    item.append(open, remove);
    list.append(item);
  }
  $("no-nodes").hidden = nodes.size > 0;
  $("add-node").disabled = ended || nodes.size >= data.max_nodes || adding;
  $("add-node").title = nodes.size >= data.max_nodes ? `At most ${data.max_nodes} nodes` : "";
}

function renderConnection() {
  const terminal = terminals.get(selected);
  const conn = $("conn");
  conn.className = `conn ${terminal ? terminal.state : ""}`;
  conn.textContent = terminal ? terminal.stateText || "" : "";
}

function select(name) {
  if (!nodes.has(name)) return;
  selected = name;
  for (const [other, terminal] of terminals) if (other !== name) terminal.hide();
  let terminal = terminals.get(name);
  if (!terminal) {
    terminal = new NodeTerminal(name);
    terminals.set(name, terminal);
  }
  $("empty").hidden = true;
  const node = nodes.get(name);
  $("term-title").textContent = `${node.name}${node.ip ? ` — ${node.ip}` : ""}`;
  terminal.show();
  renderNodes();
  renderConnection();
  history.replaceState(null, "", `#${name}`);
}

function upsert(node) {
  nodes.set(node.name, { ...nodes.get(node.name), ...node });
  renderNodes();
}

function forget(name, why) {
  nodes.delete(name);
  const terminal = terminals.get(name);
  if (terminal) {
    terminal.dispose();
    terminals.delete(name);
  }
  if (selected === name) {
    selected = null;
    const next = nodes.keys().next().value;
    if (next) select(next);
    else {
      $("empty").hidden = false;
      $("term-title").textContent = why || "No node selected";
      renderConnection();
    }
  }
  renderNodes();
}

let adding = false;

async function addNode() {
  if (adding || ended) return;
  adding = true;
  showError("");
  renderNodes();
  const progress = $("progress");
  progress.hidden = false;
  const started = Date.now();
  const tick = setInterval(() => {
    $("progress-text").textContent = `Starting a node… ${((Date.now() - started) / 1000).toFixed(0)} s`;
  }, 500);
  $("progress-text").textContent = "Starting a node…";
  try {
    const node = await call("POST", `${api}/nodes/`, {});
    upsert(node);
    select(node.name);
  } catch (error) {
    showError(`Could not add a node: ${error.message}`);
  } finally {
    clearInterval(tick);
    progress.hidden = true;
    adding = false;
    renderNodes();
  }
}

async function removeNode(name) {
  if (!window.confirm(`Remove ${name}? Everything on it is deleted.`)) return;
  showError("");
  try {
    await call("DELETE", `${api}/nodes/${encodeURIComponent(name)}/`);
    forget(name, `${name} was removed`);
  } catch (error) {
    if (error.status === 404) forget(name);
    else showError(`Could not remove ${name}: ${error.message}`);
  }
}

async function closeSession() {
  if (!window.confirm("Close this session? All its nodes are deleted.")) return;
  try {
    await call("DELETE", `${api}/`);
  } catch (error) {
    if (error.status !== 404) {
      showError(`Could not close the session: ${error.message}`);
      return;
    }
  }
  endSession("You closed this session; everything in it has been deleted.");
}

function endSession(text) {
  if (ended) return;
  ended = true;
  for (const terminal of terminals.values()) if (terminal.ws) terminal.ws.close(1000);
  $("ended-text").textContent = text;
  $("ended").hidden = false;
  $("ended").querySelector("a").focus();
  renderNodes();
}

// --- time left ----------------------------------------------------------------------

const lifetimeEnds = Date.parse(data.lifetime_ends_at);
let expiresAt = Date.parse(data.expires_at);

function noteActivity() {
  // Typing pushes the idle limit back (the server throttles the writes).
  expiresAt = Math.min(lifetimeEnds, Date.now() + data.idle_timeout * 1000);
  $("expiry-warning").hidden = true;
}

function renderTime() {
  const left = Math.max(0, Math.round((expiresAt - Date.now()) / 1000));
  const h = Math.floor(left / 3600);
  const m = Math.floor((left % 3600) / 60);
  const s = String(left % 60).padStart(2, "0");
  $("time-value").textContent = h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
  const warn = left <= data.warning_seconds;
  $("time-left").classList.toggle("warn", warn);
  if (warn && !ended) {
    const box = $("expiry-warning");
    box.hidden = false;
    box.textContent =
      expiresAt >= lifetimeEnds
        ? "This session reaches its time limit soon; save what you need."
        : "This session ends soon for lack of activity; type something to keep it.";
  }
}

// --- session events -----------------------------------------------------------------

let eventsAttempt = 0;

function connectEvents() {
  const ws = new WebSocket(`${wsBase}/ws/sessions/${encodeURIComponent(sessionId)}/events/`);
  ws.onopen = () => {
    if (eventsAttempt) resync();
    eventsAttempt = 0;
  };
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "node.added") upsert(message.node);
    else if (message.type === "node.removed") forget(message.name, `${message.name} was removed`);
    else if (message.type === "node.gone") forget(message.name, `${message.name} is gone`);
    else if (message.type === "session.expiring") {
      if (message.expires_at) expiresAt = Date.parse(message.expires_at);
      renderTime();
    } else if (message.type === "session.ended") {
      endSession(
        message.reason === "expired"
          ? "The session reached its time limit; everything in it has been deleted."
          : "The session was closed; everything in it has been deleted.",
      );
    }
  };
  ws.onclose = (event) => {
    if (ended) return;
    if (event.code === 4404) {
      endSession("This session has ended; everything in it has been deleted.");
      return;
    }
    const delay = Math.min(10000, 500 * 2 ** eventsAttempt) * (0.75 + Math.random() / 2);
    eventsAttempt += 1;
    setTimeout(connectEvents, delay);
  };
}

async function resync() {
  // Events missed while disconnected: take the node list from the API again.
  try {
    const session = await call("GET", `${api}/`);
    const names = new Set(session.nodes.map((node) => node.name));
    for (const name of [...nodes.keys()]) if (!names.has(name)) forget(name);
    for (const node of session.nodes) upsert(node);
    expiresAt = Date.parse(session.expires_at);
  } catch (error) {
    if (error.status === 404) endSession("This session has ended; everything in it has been deleted.");
  }
}

// --- start --------------------------------------------------------------------------

for (const node of data.nodes) nodes.set(node.name, node);
renderNodes();
$("add-node").addEventListener("click", addNode);
$("close-session").addEventListener("click", closeSession);
document.addEventListener("keydown", (event) => {
  if (event.altKey && !event.ctrlKey && !event.metaKey && /^Digit[1-9]$/.test(event.code)) {
    const name = `node${event.code.slice(5)}`;
    if (nodes.has(name)) {
      event.preventDefault();
      select(name);
    }
  }
});
$("terminals").addEventListener("keydown", (event) => {
  if (event.key.length === 1 || event.key === "Enter") noteActivity();
});
const wanted = location.hash.slice(1);
const first = nodes.has(wanted) ? wanted : nodes.keys().next().value;
if (first) select(first);
renderTime();
setInterval(renderTime, 1000);
connectEvents();
