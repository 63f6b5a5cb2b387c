// The embed (docs/embed.md): terminals and runnable code blocks in any page, served by
// pwd and included from another origin with no build step:
//   <script type="module" src="https://pwd.example.org/static/pwd/embed.js"
//           data-pwd-image="pwd-node" data-pwd-duration="45m"></script>
//   <div data-pwd-term="node1"></div>   <pre data-pwd-run="node1">docker run hello-world</pre>
// Markdown fences (```pwd-node1) give <pre><code class="language-pwd-node1">, also runnable.
// The first interaction (a click on a block or on a terminal's Start) creates the session
// and one node per name; the terminals are the session page's (static/js/terminal.js).
import { ApiError, call, sessionApi } from "../js/api.js";
import { NodeTerminal } from "../js/terminal.js";

const tag = document.querySelector('script[src*="pwd/embed.js"]');
const options = tag ? tag.dataset : {};
const server = (options.pwdBaseUrl || new URL("../..", import.meta.url).href).replace(/\/+$/, "");
const FENCE = /(?:^|\s)language-pwd-([A-Za-z0-9]+)(?:\s|$)/;

for (const sheet of ["../vendor/xterm/css/xterm.css", "./embed.css"]) {
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = new URL(sheet, import.meta.url).href;
  document.head.append(link);
}

const places = new Map(); // page name -> { element, status, terminal, connected }
let started = null;

// The node a code block runs in, or null for an ordinary block.
function blockNode(pre) {
  if (pre.dataset.pwdRun) return pre.dataset.pwdRun;
  for (const element of [pre, pre.querySelector("code")]) {
    const match = element && FENCE.exec(element.className);
    if (match) return match[1];
  }
  return null;
}

function place(name, after) {
  let found = places.get(name);
  if (found) return found;
  let element = document.querySelector(`[data-pwd-term="${CSS.escape(name)}"]`);
  if (!element) {
    element = document.createElement("div");
    element.dataset.pwdTerm = name;
    after.after(element);
  }
  element.classList.add("pwd-term");
  element.dataset.pwdState = "idle";
  const status = document.createElement("p");
  status.className = "pwd-status";
  const begin = document.createElement("button");
  begin.type = "button";
  begin.className = "pwd-start";
  begin.textContent = `Start ${name}`;
  begin.addEventListener("click", () => start().catch(() => {}));
  status.append(begin);
  element.append(status);
  found = { name, element, status, terminal: null };
  found.connected = new Promise((resolve) => (found.resolve = resolve));
  places.set(name, found);
  return found;
}

function report(text, state) {
  for (const found of places.values()) {
    found.status.textContent = text;
    found.element.dataset.pwdState = state;
  }
}

// "90", "30s", "15m", "1h30m" (as Go writes durations) in milliseconds; 0 for none or bad.
function duration(text) {
  const match = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(text || "");
  if (/^\d+$/.test(text || "")) return Number(text) * 1000;
  if (!match || !text) return 0;
  const [, h = 0, m = 0, sec = 0] = match;
  return ((Number(h) * 60 + Number(m)) * 60 + Number(sec)) * 1000;
}

const endUrl = (sessionId) => `${server}/embed/sessions/${encodeURIComponent(sessionId)}/end/`;

// The page's own duration (data-pwd-duration), counted from when its terminals start;
// the server's limits apply regardless.
function endAfterDuration(sessionId) {
  const limit = duration(options.pwdDuration);
  if (!limit) return;
  setTimeout(() => {
    navigator.sendBeacon(endUrl(sessionId));
    for (const found of places.values()) found.terminal?.close("The session has ended.");
  }, limit);
}

async function createNodes() {
  const session = await call("POST", `${server}/embed/sessions/`, {});
  // Leaving the page ends the session: a beacon needs no preflight and outlives the page.
  addEventListener("pagehide", () => navigator.sendBeacon(endUrl(session.id)));
  const api = sessionApi(session.id, server);
  const body = options.pwdImage ? { image: options.pwdImage } : {};
  for (const found of places.values()) {
    found.status.textContent = `Starting ${found.name}…`;
    const node = await api.addNode(body);
    found.element.dataset.pwdNode = node.name;
    found.terminal = new NodeTerminal({
      parent: found.element,
      url: api.terminalUrl(node.name),
      onState: (terminal) => {
        found.status.textContent = terminal.stateText || "";
        found.element.dataset.pwdState = terminal.state;
        if (terminal.state === "connected") found.resolve(terminal);
      },
    });
    // The host page (and the tests) reach a placeholder's terminal through it.
    found.element.pwdTerminal = found.terminal;
    found.terminal.element.hidden = false;
    found.terminal.refit();
  }
  endAfterDuration(session.id);
}

// Creates the session and its nodes once; later calls wait for the same start.
function start() {
  started ??= createNodes().catch((error) => {
    const text = error instanceof ApiError ? error.message : "pwd cannot be reached.";
    report(text, "error");
    started = null;
    throw error;
  });
  return started;
}

async function run(name, text) {
  await start();
  const terminal = await places.get(name).connected;
  // One line at a time as typed: the shell runs each on its Enter.
  const lines = text.replace(/\s+$/, "").split("\n");
  terminal.send({ type: "input", data: `${lines.join("\r")}\r` });
  terminal.term.focus();
}

async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Select and copy";
  }
  setTimeout(() => (button.textContent = "Copy"), 1500);
}

for (const pre of document.querySelectorAll("pre")) {
  const name = blockNode(pre);
  if (!name) continue;
  const text = pre.textContent;
  place(name, pre);
  pre.classList.add("pwd-run");
  pre.tabIndex = 0;
  pre.title = `Click to run in ${name}`;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "pwd-copy";
  button.textContent = "Copy";
  button.addEventListener("click", (event) => {
    event.stopPropagation();
    copy(text, button);
  });
  pre.append(button);
  const go = () => run(name, text).catch(() => {});
  pre.addEventListener("click", () => {
    if (!getSelection().toString()) go();
  });
  pre.addEventListener("keydown", (event) => {
    if (event.target === pre && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      go();
    }
  });
}
for (const element of document.querySelectorAll("[data-pwd-term]")) place(element.dataset.pwdTerm, element);
