// Swarm templates on the session page: one click asks the server for a template's nodes
// and their swarm (POST /api/sessions/<id>/setup/). Progress comes from the session's
// setup.* events, which the page hands to onEvent, so every viewer of the session sees it.
import { call } from "./api.js";

const STEPS = Object.freeze({
  nodes: "Starting nodes",
  swarm: "Joining the swarm",
  ready: "Nodes Ready",
  run: "Running commands",
});

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

// "1 manager (node1), 1 worker (node2)" from setup.done's nodes.
function describe(nodes) {
  const parts = [];
  for (const role of ["manager", "worker", "none"]) {
    const names = nodes.filter((node) => node.role === role).map((node) => node.name);
    if (!names.length) continue;
    const word = role === "none" ? "outside the swarm" : plural(names.length, role);
    parts.push(`${role === "none" ? `${names.length} ` : ""}${word} (${names.join(", ")})`);
  }
  return parts.join(", ");
}

export class SwarmSetup {
  // root: the section holding the template buttons (data-template), a <progress>, the
  // .setup-status and .setup-error lines. onSession(session) gets the API's answer.
  constructor({ root, sessionId, onSession }) {
    this.root = root;
    this.path = `/api/sessions/${encodeURIComponent(sessionId)}/setup/`;
    this.onSession = onSession;
    this.bar = root.querySelector("progress");
    this.status = root.querySelector(".setup-status");
    this.error = root.querySelector(".setup-error");
    this.buttons = [...root.querySelectorAll("button[data-template]")];
    this.running = false;
    this.finished = false;
    this.state = { empty: true, ended: false };
    for (const button of this.buttons) {
      button.addEventListener("click", () => this.start(button.dataset.template, button.textContent));
    }
  }

  // The templates need a session with no nodes; the page calls this on every change.
  render(state) {
    this.state = { ...this.state, ...state };
    const off = this.running || !this.state.empty || this.state.ended;
    for (const button of this.buttons) {
      button.disabled = off;
      button.title = !this.state.empty && !this.running ? "Only on a session with no nodes" : "";
    }
  }

  async start(template, label) {
    if (this.running || !this.state.empty || this.state.ended) return;
    this.running = true;
    this.finished = false;
    this.render({});
    this.showError("");
    this.show(`Setting up ${label}…`);
    try {
      const session = await call("POST", this.path, { template });
      this.onSession(session);
      if (!this.finished) this.done(`Swarm ready: ${plural(session.nodes.length, "node")}.`);
    } catch (error) {
      this.fail(error.message);
    } finally {
      this.running = false;
      this.render({});
    }
  }

  onEvent(message) {
    if (message.type === "setup.progress") {
      const node = message.node ? ` (${message.node})` : "";
      this.show(`${STEPS[message.step] || message.step}: ${message.done} of ${message.of}${node}`);
      this.bar.max = Math.max(1, message.of);
      this.bar.value = message.done;
      this.bar.hidden = false;
    } else if (message.type === "setup.done") {
      this.done(`Swarm ready: ${describe(message.nodes)}.`);
    } else if (message.type === "setup.failed") {
      this.fail(message.error?.message || "the setup failed");
    }
  }

  show(text) {
    this.status.textContent = text;
    this.status.hidden = false;
  }

  done(text) {
    this.finished = true;
    this.bar.hidden = true;
    this.show(text);
  }

  fail(message) {
    this.finished = true;
    this.bar.hidden = true;
    this.status.hidden = true;
    this.showError(`The setup failed: ${message}`);
  }

  showError(message) {
    this.error.textContent = message;
    this.error.hidden = !message;
  }
}
