// The baseline of bench/browser_throughput.py: xterm.js alone, fed by a local websocket
// server as fast as it sends, with the pwd page's terminal options and size, no flow
// control, and xterm.js's default DOM renderer (?renderer=webgl: the WebGL addon).
// `window.bench.run(url, total)` resolves once `total` bytes are drawn.
import { Terminal } from "/node_modules/@xterm/xterm/lib/xterm.mjs";
import { WebglAddon } from "/node_modules/@xterm/addon-webgl/lib/addon-webgl.mjs";

const params = new URLSearchParams(location.search);
const term = new Terminal({
  cols: Number(params.get("cols")) || 80,
  rows: Number(params.get("rows")) || 24,
  fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
  fontSize: 14,
  scrollback: 5000,
  theme: { background: "#0b1220", foreground: "#dbe2ee", cursor: "#8fd3ff" },
});
term.open(document.getElementById("t"));
// ?renderer=webgl: the same page with the WebGL renderer, to tell the renderer's share.
let renderer = "dom";
if (params.get("renderer") === "webgl") {
  try {
    term.loadAddon(new WebglAddon());
    renderer = "webgl";
  } catch {
    renderer = "dom (no WebGL)";
  }
}

function run(url, total) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    let processed = 0;
    let started = 0;
    ws.onopen = () => {
      started = performance.now();
      ws.send("go");
    };
    ws.onerror = () => reject(new Error("websocket error"));
    ws.onmessage = (event) => {
      const bytes = new Uint8Array(event.data);
      term.write(bytes, () => {
        processed += bytes.length;
        if (processed >= total) {
          ws.close();
          resolve({ ms: performance.now() - started, bytes: processed });
        }
      });
    };
  });
}

window.bench = { term, run, renderer, ready: true };
