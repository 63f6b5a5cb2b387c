// The session page: the node list, the time left, live session events, and one terminal
// per opened node (kept alive while hidden, so switching nodes loses nothing).
import { backoff, CLOSE, sessionApi } from "./api.js";
import { NodeFiles } from "./files.js";
import { SwarmSetup } from "./setup.js";
import { PortLinks } from "./ports.js";
import { NodeStats } from "./stats.js";
import { NodeTerminal } from "./terminal.js";
import { SessionTimer } from "./timer.js";

const data = JSON.parse(document.getElementById("session-data").textContent);
const api = sessionApi(data.id);
const $ = (id) => document.getElementById(id);

const nodes = new Map(); // name -> node data from the API
const terminals = new Map(); // name -> NodeTerminal
const portLinks = new PortLinks($("ports"), $("no-ports"));
const nodeStats = new NodeStats();
let selected = null;
let ended = false;
let adding = false;
// Upload button, files dropped on a terminal, download box: for the selected node.
new NodeFiles({ root: $("files"), dropZone: $("terminals"), sessionId: data.id, node: () => selected });
const swarmSetup = new SwarmSetup({
  root: $("setup"),
  sessionId: data.id,
  onSession: (session) => {
    // The nodes were announced as each came up; list them in the session's order.
    const known = new Map(nodes);
    nodes.clear();
    for (const node of session.nodes) nodes.set(node.name, { ...known.get(node.name), ...node });
    for (const [name, node] of known) if (!nodes.has(name)) nodes.set(name, node);
    renderNodes();
    if (!selected && nodes.size) select(nodes.keys().next().value);
  },
});
// Exposed for tests and for poking around in the console; no module reads it.
window.pwd = { terminals, nodes };

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
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
    open.append(nodeStats.cell(node.name));
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
  swarmSetup.render({ empty: nodes.size === 0, ended });
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
    terminal = new NodeTerminal({
      parent: $("terminals"),
      url: api.terminalUrl(name),
      onState: (changed) => {
        if (terminals.get(selected) === changed) renderConnection();
      },
    });
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
  if (node.ports) portLinks.show(node.name, node.ports);
  renderNodes();
}

function forget(name, why) {
  nodes.delete(name);
  nodeStats.forget(name);
  portLinks.forget(name);
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
    const node = await api.addNode();
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
    await api.removeNode(name);
    forget(name, `${name} was removed`);
  } catch (error) {
    if (error.status === 404) forget(name);
    else showError(`Could not remove ${name}: ${error.message}`);
  }
}

async function closeSession() {
  if (!window.confirm("Close this session? All its nodes are deleted.")) return;
  try {
    await api.end();
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
  timer.stop();
  for (const terminal of terminals.values()) terminal.close("The session has ended.");
  $("ended-text").textContent = text;
  $("ended").hidden = false;
  $("ended").querySelector("a").focus();
  renderNodes();
}

// --- the page's keys ----------------------------------------------------------------

// Alt+digit switches nodes and F6 leaves a terminal for the panel. Caught on the way
// down (capture), so that a terminal with focus never sees these keys.
function onPageKey(event) {
  if (event.altKey && !event.ctrlKey && !event.metaKey && /^Digit[1-9]$/.test(event.code)) {
    const name = `node${event.code.slice(5)}`;
    if (!nodes.has(name)) return;
    select(name);
  } else if (event.key === "F6" && $("terminals").contains(event.target)) {
    $("panel").focus();
  } else {
    return;
  }
  event.preventDefault();
  event.stopPropagation();
}

// --- time left ----------------------------------------------------------------------

const timer = new SessionTimer({
  expiresAt: data.expires_at,
  hardExpiresAt: data.lifetime_ends_at,
  idleSeconds: data.idle_timeout,
  warningSeconds: data.warning_seconds,
  elements: {
    time: $("time-left"),
    value: $("time-value"),
    warning: $("expiry-warning"),
    text: $("expiry-text"),
    extend: $("extend"),
  },
  extend: () => api.extend(),
});

// --- session events -----------------------------------------------------------------

let eventsAttempt = 0;

function connectEvents() {
  const ws = new WebSocket(api.eventsUrl);
  ws.onopen = () => {
    if (eventsAttempt) resync();
    eventsAttempt = 0;
  };
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    // Other modules of the page (notices.js, on a workshop seat) hear every event too.
    document.dispatchEvent(new CustomEvent("pwd:event", { detail: message }));
    if (message.type === "node.added") upsert(message.node);
    else if (message.type === "node.removed") forget(message.name, `${message.name} was removed`);
    else if (message.type === "node.gone") forget(message.name, `${message.name} is gone`);
    else if (message.type === "node.ports" && nodes.has(message.name)) {
      portLinks.show(message.name, message.ports);
    }
    else if (message.type.startsWith("setup.")) swarmSetup.onEvent(message);
    else if (message.type === "session.expiring") timer.expiring(message.expires_at);
    else if (message.type === "session.extended") timer.setEnd(message.expires_at);
    else if (message.type === "workshop.extended") timer.setEnd(message.ends_at);
    else if (message.type === "node.stats" && nodes.has(message.name)) nodeStats.update(message);
    else if (message.type === "session.ended") {
      endSession(
        {
          expired: "The session reached its time limit; everything in it has been deleted.",
          workshop_ended: "The workshop has ended; everything in this seat has been deleted.",
        }[message.reason] || "The session was closed; everything in it has been deleted.",
      );
    }
  };
  ws.onclose = (event) => {
    if (ended) return;
    if (event.code === CLOSE.NOT_FOUND) {
      endSession("This session has ended; everything in it has been deleted.");
      return;
    }
    const delay = backoff(eventsAttempt);
    eventsAttempt += 1;
    setTimeout(connectEvents, delay);
  };
}

async function resync() {
  // Events missed while disconnected: take the node list from the API again.
  try {
    const session = await api.get();
    const names = new Set(session.nodes.map((node) => node.name));
    for (const name of [...nodes.keys()]) if (!names.has(name)) forget(name);
    for (const node of session.nodes) upsert(node);
    timer.setEnd(session.expires_at);
  } catch (error) {
    if (error.status === 404) endSession("This session has ended; everything in it has been deleted.");
  }
}

// --- start --------------------------------------------------------------------------

for (const node of data.nodes) nodes.set(node.name, node);
renderNodes();
$("add-node").addEventListener("click", addNode);
$("close-session").addEventListener("click", closeSession);
document.addEventListener("keydown", onPageKey, { capture: true });
$("terminals").addEventListener("keydown", (event) => {
  if (event.key.length === 1 || event.key === "Enter") timer.noteActivity();
});
const wanted = location.hash.slice(1);
const first = nodes.has(wanted) ? wanted : nodes.keys().next().value;
if (first) select(first);
connectEvents();
resync(); // the page's data has no ports: the API reads them
