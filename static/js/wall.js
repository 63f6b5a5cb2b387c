// The classroom wall: every seat as a card with a live text thumbnail (the wall socket
// sends the screens of the seats on screen only, at most once a second), the header's
// counts and actions, and a seat's full terminals, read-only until "Take over".
import { backoff, call, CLOSE } from "./api.js";
import { SeatTerminal } from "./seat_terminal.js";

const data = JSON.parse(document.getElementById("wall-data").textContent);
const $ = (id) => document.getElementById(id);
const api = `/api/workshops/${encodeURIComponent(data.id)}/`;
const wsRoot = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/workshops/${encodeURIComponent(data.id)}`;
const CLOSE_FORBIDDEN = 4403; // not an instructor of this workshop (any more)
const STATES = { provisioning: "Being made", ready: "Ready", taken: "Taken", failed: "Failed" };

const seats = new Map(); // number -> {seat, card, pre, endsAt, screen}
let endsAt = Date.parse(data.ends_at);
let running = data.running;
let wall = null;
let wallAttempt = 0;

const csrf = () => document.querySelector("#csrf [name=csrfmiddlewaretoken]").value;
const post = (path, body) => call("POST", api + path, body, { "X-CSRFToken": csrf() });

function clock(seconds) {
  const left = Math.max(0, Math.round(seconds));
  const h = Math.floor(left / 3600);
  const m = String(Math.floor((left % 3600) / 60)).padStart(h ? 2 : 1, "0");
  return h ? `${h}:${m}:${String(left % 60).padStart(2, "0")}` : `${m}:${String(left % 60).padStart(2, "0")}`;
}

function ago(timestamp) {
  if (!timestamp) return "no activity yet";
  const seconds = Math.max(0, (Date.now() - Date.parse(timestamp)) / 1000);
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

function showError(text) {
  $("wall-error").textContent = text;
  $("wall-error").hidden = !text;
}

function say(text) {
  $("wall-status").textContent = text;
}

// --- seat cards ---------------------------------------------------------------------

function card(number) {
  const item = document.createElement("li");
  item.className = "seat-card";
  item.dataset.seat = String(number);
  item.innerHTML = `<button type="button" class="seat-open">
      <span class="seat-head"><span class="seat-number"></span><span class="seat-name"></span><span class="badge"></span></span>
      <pre class="thumb" aria-hidden="true"></pre>
      <span class="seat-foot"><span class="seat-nodes"></span><span class="seat-activity"></span><span class="seat-time"></span></span>
    </button>
    <button type="button" class="seat-zoom" aria-pressed="false" title="Enlarge the thumbnail">Enlarge</button>`;
  item.querySelector(".seat-open").addEventListener("click", () => openSeat(number));
  const zoom = item.querySelector(".seat-zoom");
  zoom.addEventListener("click", () => {
    const on = item.classList.toggle("enlarged");
    zoom.setAttribute("aria-pressed", String(on));
    zoom.textContent = on ? "Shrink" : "Enlarge";
  });
  return item;
}

function renderSeat(entry) {
  const { seat, card: item } = entry;
  item.dataset.status = seat.status;
  item.querySelector(".seat-number").textContent = `Seat ${seat.number}`;
  item.querySelector(".seat-name").textContent = seat.trainee_name || (seat.status === "ready" ? "free" : "");
  const badge = item.querySelector(".badge");
  badge.className = `badge ${seat.status}`;
  badge.textContent = STATES[seat.status] || seat.status;
  badge.title = seat.error ? `${seat.error} (attempt ${seat.attempts})` : "";
  item.querySelector(".seat-nodes").textContent = seat.nodes.length
    ? seat.nodes.map((node) => node.name).join(" ")
    : "no node yet";
  item.querySelector(".seat-open").setAttribute(
    "aria-label",
    `Seat ${seat.number}, ${seat.trainee_name || "no trainee"}, ${STATES[seat.status] || seat.status}: open its terminals`,
  );
  renderTimes(entry);
}

function renderTimes(entry) {
  const { seat, card: item } = entry;
  const taken = seat.status === "taken";
  item.querySelector(".seat-activity").textContent = taken ? ago(seat.last_activity_at) : "";
  item.querySelector(".seat-time").textContent = entry.endsAt ? `${clock((entry.endsAt - Date.now()) / 1000)} left` : "";
}

function roster(list) {
  const grid = $("seats");
  for (const seat of list) {
    let entry = seats.get(seat.number);
    if (!entry) {
      entry = { card: card(seat.number) };
      seats.set(seat.number, entry);
      grid.append(entry.card);
      entry.pre = entry.card.querySelector(".thumb");
      observer.observe(entry.card);
    }
    entry.seat = seat;
    entry.endsAt = seat.time_left ? Date.now() + seat.time_left * 1000 : 0;
    if (!seat.nodes.length) entry.pre.textContent = seat.status === "failed" ? seat.error : "";
    renderSeat(entry);
  }
  const count = (status) => list.filter((seat) => seat.status === status).length;
  $("count-ready").textContent = String(count("ready"));
  $("count-taken").textContent = String(count("taken"));
  const made = count("ready") + count("taken");
  const making = list.length - made;
  $("provisioning").hidden = making === 0;
  $("progress-bar").max = list.length || 1;
  $("progress-bar").value = made;
  const failed = count("failed");
  const from = Date.parse(data.prepare_from);
  $("progress-text").textContent =
    from > Date.now()
      ? `Seats are made from ${new Date(from).toLocaleString([], { dateStyle: "medium", timeStyle: "short" })}, ahead of the start`
      : `${made} of ${list.length} seats ready${failed ? `, ${failed} failed (tried again)` : ""}`;
  if (overlay.number && seats.has(overlay.number)) renderTabs();
}

function screen(message) {
  const entry = seats.get(message.seat);
  if (!entry) return;
  // Only the newest screen is kept: the text replaces the last one, nothing queues.
  entry.pre.textContent = message.lines.join("\n");
  entry.screen = { cols: message.cols, rows: message.rows };
  entry.pre.style.setProperty("--cols", String(message.cols));
  entry.pre.style.setProperty("--rows", String(message.rows));
  if (overlay.number === message.seat && overlay.node === entry.seat.nodes[0]?.name) {
    overlay.terminals.get(overlay.node)?.follow(message.cols, message.rows);
  }
}

// The seats on screen, for the wall socket: hidden thumbnails cost nothing.
const onScreen = new Set();
let visibleTimer = null;
const observer = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    const number = Number(entry.target.dataset.seat);
    if (entry.isIntersecting) onScreen.add(number);
    else onScreen.delete(number);
  }
  clearTimeout(visibleTimer);
  visibleTimer = setTimeout(sendVisible, 150);
});

function sendVisible() {
  if (wall && wall.readyState === WebSocket.OPEN) {
    wall.send(JSON.stringify({ type: "visible", seats: [...onScreen].sort((a, b) => a - b) }));
  }
}

// --- the wall socket ----------------------------------------------------------------

function connectWall() {
  const ws = new WebSocket(`${wsRoot}/wall/`);
  wall = ws;
  ws.onopen = () => {
    wallAttempt = 0;
    say("");
    sendVisible();
  };
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "roster") {
      roster(message.seats);
      if (!message.running) ended();
    } else if (message.type === "screen") screen(message);
    else if (message.type === "error") showError(message.error.message);
  };
  ws.onclose = (event) => {
    if (ws !== wall || !running) return;
    if (event.code === CLOSE_FORBIDDEN || event.code === CLOSE.NOT_FOUND) return;
    if (event.code === CLOSE.NORMAL) {
      ended();
      return;
    }
    const delay = backoff(wallAttempt);
    wallAttempt += 1;
    say(`Connection lost; reconnecting in ${Math.ceil(delay / 1000)} s…`);
    setTimeout(connectWall, delay);
  };
}

let endShown = false;

function ended() {
  running = false;
  if (endShown) return;
  endShown = true;
  $("wall-ended").hidden = false;
  for (const id of ["message-open", "extend-all", "end-open", "takeover"]) $(id).disabled = true;
  for (const terminal of overlay.terminals.values()) terminal.close("The workshop has ended.");
}

// --- a seat's terminals -------------------------------------------------------------

const overlay = {
  number: null,
  node: null,
  terminals: new Map(),
  renderTakeover() {
    const terminal = this.terminals.get(this.node);
    const on = Boolean(terminal?.takingOver);
    $("takeover").setAttribute("aria-pressed", String(on));
    $("takeover").textContent = on ? "Release" : "Take over";
    $("seat-overlay").classList.toggle("taking-over", on);
    $("seat-note").textContent = on
      ? `You are typing in the trainee's ${this.node}; their page says so. Release to give it back.`
      : "Read-only: you see the trainee's terminal at its own size. Take over to type.";
  },
};

function openSeat(number) {
  const entry = seats.get(number);
  if (!entry) return;
  overlay.number = number;
  $("seat-overlay-title").textContent = `Seat ${number}${entry.seat.trainee_name ? ` — ${entry.seat.trainee_name}` : ""}`;
  $("seat-overlay").showModal();
  renderTabs();
  const first = entry.seat.nodes[0]?.name;
  if (first) selectNode(first);
  else $("seat-conn").textContent = "This seat has no node yet.";
}

function renderTabs() {
  const entry = seats.get(overlay.number);
  const tabs = $("seat-tabs");
  tabs.replaceChildren();
  for (const node of entry.seat.nodes) {
    const tab = document.createElement("button");
    tab.type = "button";
    tab.setAttribute("role", "tab");
    tab.textContent = node.name;
    tab.setAttribute("aria-selected", String(node.name === overlay.node));
    tab.addEventListener("click", () => selectNode(node.name));
    tabs.append(tab);
  }
}

function selectNode(name) {
  overlay.node = name;
  for (const [other, terminal] of overlay.terminals) if (other !== name) terminal.hide();
  let terminal = overlay.terminals.get(name);
  if (!terminal) {
    terminal = new SeatTerminal({
      parent: $("seat-terminals"),
      url: `${wsRoot}/seats/${overlay.number}/nodes/${encodeURIComponent(name)}/terminal/`,
      onTakeover: () => overlay.renderTakeover(),
      onState: (changed) => {
        if (overlay.terminals.get(overlay.node) === changed) $("seat-conn").textContent = changed.stateText || "";
      },
    });
    overlay.terminals.set(name, terminal);
    const size = seats.get(overlay.number).screen;
    if (size && name === seats.get(overlay.number).seat.nodes[0]?.name) terminal.follow(size.cols, size.rows);
  }
  terminal.show();
  $("seat-conn").textContent = terminal.stateText || "";
  renderTabs();
  overlay.renderTakeover();
}

function closeSeat() {
  // Closing a socket that took over releases it (the trainee is told).
  for (const terminal of overlay.terminals.values()) terminal.dispose();
  overlay.terminals.clear();
  overlay.number = overlay.node = null;
  $("seat-tabs").replaceChildren();
  if ($("seat-overlay").open) $("seat-overlay").close();
}

$("takeover").addEventListener("click", () => {
  const terminal = overlay.terminals.get(overlay.node);
  if (!terminal) return;
  terminal.takeover(!terminal.takingOver);
  overlay.renderTakeover();
  if (terminal.takingOver) terminal.term.focus();
});
$("seat-close").addEventListener("click", closeSeat);
// Escape belongs to the trainee's program (vim) while a terminal has the keys.
$("seat-overlay").addEventListener("cancel", (event) => {
  if ($("seat-terminals").contains(document.activeElement)) event.preventDefault();
});
$("seat-overlay").addEventListener("close", closeSeat);

// --- the header's actions -----------------------------------------------------------

$("copy-link").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(data.join_url);
    $("copy-status").textContent = "Copied.";
  } catch {
    $("copy-status").textContent = "Select the link and copy it.";
  }
});

$("message-open").addEventListener("click", () => {
  $("message-text").value = $("wall-message-text").textContent;
  $("message-dialog").showModal();
});
$("message-cancel").addEventListener("click", () => $("message-dialog").close());
$("message-form").addEventListener("submit", async () => {
  const text = $("message-text").value;
  showError("");
  try {
    const answer = await post("message/", { text });
    $("wall-message-text").textContent = text.trim();
    $("wall-message").hidden = !text.trim();
    say(text.trim() ? `Message sent to ${answer.sent} trainee page(s).` : "Message cleared.");
  } catch (error) {
    showError(`Could not send the message: ${error.message}`);
  }
});

$("extend-all").addEventListener("click", async () => {
  showError("");
  try {
    const workshop = await post("extend/", {});
    endsAt = Date.parse(workshop.ends_at);
    roster(workshop.seats);
    say(`Extended: the workshop now ends at ${new Date(endsAt).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}.`);
  } catch (error) {
    showError(`Could not extend: ${error.message}`);
  }
});

$("end-open").addEventListener("click", () => $("end-dialog").showModal());
$("end-dialog").addEventListener("close", async () => {
  if ($("end-dialog").returnValue !== "end") return;
  showError("");
  say("Ending the workshop…");
  try {
    await call("DELETE", api, undefined, { "X-CSRFToken": csrf() });
    say("");
    ended();
  } catch (error) {
    showError(`Could not end the workshop: ${error.message}`);
  }
});

// --- start --------------------------------------------------------------------------

function tick() {
  $("time-left").textContent = running ? clock((endsAt - Date.now()) / 1000) : "ended";
  for (const entry of seats.values()) renderTimes(entry);
}

roster(data.seats);
if (!running) ended();
else connectWall();
tick();
setInterval(tick, 1000);
