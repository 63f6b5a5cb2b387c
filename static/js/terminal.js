// One xterm.js terminal on one node's websocket (docs/protocol.md): output with flow
// control, input, size, reconnecting with backoff, copy and paste. It knows nothing of
// the page around it: it draws into the element it is given and reports its state.
// Relative paths rather than an import map: the CSP allows no inline script.
import { Terminal } from "../vendor/xterm/lib/xterm.mjs";
import { FitAddon } from "../vendor/xterm-addon-fit/lib/addon-fit.mjs";
import { WebglAddon } from "../vendor/xterm-addon-webgl/lib/addon-webgl.mjs";
import { backoff, CLOSE } from "./api.js";

// Replies xterm.js sends on its own: device attributes, cursor and mode reports.
const REPORT = /^\x1b(\[[?>=]?[\d;]*\$?[a-zA-Z]|\][^\x07\x1b]*(\x07|\x1b\\)|P[^\x1b]*\x1b\\)$/;

const FINAL = new Map([
  [CLOSE.NOT_FOUND, "This node does not exist any more."],
  [CLOSE.GONE, "This node is gone."],
]);

// WebGL draws faster than the DOM on a real GPU, and 3-4x slower on a software one
// (SwiftShader in headless Chromium, llvmpipe): measured in bench/browser_throughput.py.
const SOFTWARE_GL = /swiftshader|llvmpipe|softpipe|software|basic render/i;

function hardwareWebgl() {
  try {
    const gl = document.createElement("canvas").getContext("webgl2");
    if (!gl) return false;
    const info = gl.getExtension("WEBGL_debug_renderer_info");
    const name = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
    gl.getExtension("WEBGL_lose_context")?.loseContext();
    return !SOFTWARE_GL.test(String(name));
  } catch {
    return false;
  }
}

let useWebgl = null;

// Acknowledge drawn output once this much is unacknowledged, or after ACK_DELAY ms.
const ACK_BYTES = 32768;
const ACK_DELAY = 50;

export class NodeTerminal {
  // `parent`: the element to draw in; `url`: the terminal websocket's address;
  // `onState(terminal)`: called whenever `state` ("connecting", "connected", "offline",
  // "closed") or `stateText` changes.
  constructor({ parent, url, onState }) {
    this.url = url;
    this.onState = onState;
    this.element = document.createElement("div");
    this.element.className = "terminal-host";
    this.element.hidden = true;
    parent.append(this.element);
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
    this.renderer = this.loadRenderer();
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

  // "webgl" or "dom"; the DOM renderer stays when WebGL is missing, software or lost.
  loadRenderer() {
    useWebgl ??= hardwareWebgl();
    if (!useWebgl) return "dom";
    try {
      const webgl = new WebglAddon();
      webgl.onContextLoss(() => {
        webgl.dispose();
        this.renderer = "dom";
      });
      this.term.loadAddon(webgl);
      return "webgl";
    } catch {
      return "dom";
    }
  }

  setState(state, text) {
    this.state = state;
    this.stateText = text;
    this.onState(this);
  }

  connect() {
    clearTimeout(this.retryTimer);
    const ws = new WebSocket(this.url);
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
      if (ws !== this.ws || this.disposed || this.final) return;
      const final = FINAL.get(event.code);
      if (final) {
        this.final = true;
        this.setState("closed", final);
        return;
      }
      const delay = backoff(this.attempt);
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
    if (this.processed - this.acked >= ACK_BYTES) flush();
    else this.ackTimer = setTimeout(flush, ACK_DELAY);
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
    }
  }

  // Copy and paste; the page's own shortcuts never get here (see session.js).
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

  // Stop for good (the session ended): no reconnect; the screen stays readable.
  close(text) {
    if (this.final) return;
    this.final = true;
    clearTimeout(this.retryTimer);
    if (this.ws) this.ws.close(CLOSE.NORMAL);
    this.setState("closed", text);
  }

  dispose() {
    this.disposed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.ackTimer);
    this.observer.disconnect();
    if (this.ws) this.ws.close(CLOSE.NORMAL);
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
