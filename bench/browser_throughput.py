"""Terminal output in the browser, side by side: the same bytes, the same Chromium.

    .venv/bin/python bench/browser_throughput.py             # 16 MiB, 3 rounds
    .venv/bin/python bench/browser_throughput.py --mib 4 --rounds 1
    .venv/bin/python bench/browser_throughput.py --out /tmp/b   # browser.json there

Three ways to the same output (``cat`` of a file of base64 written once in the node):

- a direct attach to the node's TTY (the floor: no browser, no rendering);
- a bare xterm.js page fed by a local websocket server as fast as it can send (the
  bytes the direct attach captured, in 64 KiB frames, no flow control);
- the pwd session page in headless Chromium (websocket, hub, acks, xterm.js).

The figure that counts is pwd against the bare page, measured in the same run, round
after round. The section between the ``browser`` markers in docs/benchmarks.md is
rewritten unless --out is given.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import http.server
import json
import os
import platform
import random
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402
from bench.terminal import DirectTerminal, ready_shell, settle  # noqa: E402

# Launched as the browser tests launch it.
from tests.test_terminal_browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
FRAME = 64 * 1024
BEGIN, END = "<!-- browser:begin -->", "<!-- browser:end -->"
VIEWPORT = {"width": 1280, "height": 720}


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


# --- the direct attach: writes the file, then captures the bytes ------------------------


def _marker() -> tuple[str, bytes]:
    value = random.randrange(10**12, 10**13)
    return f"echo PWDBENCH$(({value}+1))END\r", f"PWDBENCH{value + 1}END".encode()


async def _until(term: DirectTerminal, needle: bytes, limit: float) -> bytes:
    seen = bytearray()
    async with asyncio.timeout(limit):
        while needle not in seen[-(len(needle) + FRAME) :]:
            seen += await term.recv()
    return bytes(seen)


async def direct_round(container_id: str, mib: int, write: bool) -> tuple[bytes, float]:
    """The output of ``cat`` through a direct attach, and its seconds."""
    term = await DirectTerminal.open(container_id)
    try:
        await ready_shell(term)
        if write:
            echo, done = _marker()
            raw_kib = mib * 1024 * 3 // 4
            await term.send(f"head -c {raw_kib}K /dev/urandom | base64 > /tmp/flood; {echo}")
            await _until(term, done, 120)
            await settle(term)
        echo, done = _marker()
        started = time.perf_counter()
        await term.send(f"cat /tmp/flood; {echo}")
        output = await _until(term, done, 300)
        elapsed = time.perf_counter() - started
        await settle(term)
        return output, elapsed
    finally:
        await term.close()


# --- the bare page: a static server and a websocket that sends the captured bytes ------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


def serve_static() -> tuple[http.server.ThreadingHTTPServer, str]:
    """The repository over HTTP on loopback (the bare page and node_modules)."""
    handler = functools.partial(_Quiet, directory=str(ROOT))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class Feeder:
    """A websocket server on its own thread: on "go", sends ``payload`` in frames."""

    def __init__(self) -> None:
        self.payload = b""
        self.loop = asyncio.new_event_loop()
        self.port = harness.free_port()
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        started.wait(10)
        self.url = f"ws://127.0.0.1:{self.port}/"

    def _run(self, started: threading.Event) -> None:
        from websockets.asyncio.server import serve

        async def handler(ws: Any) -> None:
            await ws.recv()
            for offset in range(0, len(self.payload), FRAME):
                await ws.send(self.payload[offset : offset + FRAME])
            await ws.wait_closed()

        async def main() -> None:
            async with serve(handler, "127.0.0.1", self.port, max_size=None, compression=None):
                started.set()
                await asyncio.Future()

        self.loop.run_until_complete(main())


def bare_round_next_to_flood(
    page: Any, base: str, feeder: Feeder, size: tuple[int, int], container_id: str
) -> dict[str, Any]:
    """The bare page while the node floods a direct attach: the same CPU competition as
    the pwd page has from the node, the engine and the server, minus pwd's path."""
    stop = threading.Event()

    def flood() -> None:
        while not stop.is_set():
            asyncio.run(_cat_once(container_id))

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    try:
        time.sleep(1)
        return bare_round(page, base, feeder, size)
    finally:
        stop.set()
        thread.join(120)


async def _cat_once(container_id: str) -> None:
    term = await DirectTerminal.open(container_id)
    try:
        echo, done = _marker()
        await term.send(f"cat /tmp/flood; {echo}")
        await _until(term, done, 300)
    finally:
        await term.close()


def bare_round(page: Any, base: str, feeder: Feeder, size: tuple[int, int]) -> dict[str, Any]:
    cols, rows = size
    page.goto(f"{base}/bench/bare/index.html?cols={cols}&rows={rows}")
    page.wait_for_function("window.bench && window.bench.ready")
    result = page.evaluate(
        "([url, total]) => window.bench.run(url, total)", [feeder.url, len(feeder.payload)]
    )
    return {"seconds": result["ms"] / 1000, "bytes": result["bytes"]}


# --- the pwd page ---------------------------------------------------------------------

_PWD_ROUND = """
async ([node, command, marker]) => {
  const terminal = window.pwd.terminals.get(node);
  const term = terminal.term;
  const before = terminal.processed;
  let resyncs = 0;
  // Time xterm.js spends with nothing to draw: everything received is processed.
  let starved = 0;
  let idleSince = null;
  let frames = 0;
  const ws = terminal.ws;
  const count = (event) => {
    if (typeof event.data === "string") {
      if (event.data.includes('"resync"')) resyncs += 1;
    } else {
      frames += 1;
      if (idleSince !== null) {
        starved += performance.now() - idleSince;
        idleSince = null;
      }
    }
  };
  const processed = terminal.onProcessed.bind(terminal);
  terminal.onProcessed = (socket, length) => {
    processed(socket, length);
    if (terminal.processed === terminal.received) idleSince = performance.now();
  };
  ws.addEventListener("message", count);
  return await new Promise((resolve) => {
    const started = performance.now();
    const seen = term.onWriteParsed(() => {
      const buffer = term.buffer.active;
      const end = buffer.baseY + buffer.cursorY;
      for (let y = Math.max(0, end - 3); y <= end; y++) {
        const line = buffer.getLine(y);
        if (line && line.translateToString(true).includes(marker)) {
          seen.dispose();
          ws.removeEventListener("message", count);
          terminal.onProcessed = processed;
          resolve({
            ms: performance.now() - started,
            bytes: terminal.processed - before,
            resyncs,
            starvedMs: starved,
            frames,
            renderer: terminal.renderer || "dom",
          });
          return;
        }
      }
    });
    terminal.send({ type: "input", data: command });
  });
}
"""


def open_pwd_page(browser: Any, server: harness.Server, session_id: str) -> Any:
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(f"{server.base}/p/{session_id}/")
    try:
        page.wait_for_function(
            "() => { const t = window.pwd && window.pwd.terminals.get('node1');"
            " return t && t.state === 'connected'; }",
            timeout=90_000,
        )
    except Exception:
        state = page.evaluate(
            "() => { const t = window.pwd && window.pwd.terminals.get('node1');"
            " return t ? [t.state, t.stateText] : document.body.innerText.slice(0, 500); }"
        )
        raise RuntimeError(f"the pwd page's terminal did not connect: {state}") from None
    page.locator(".terminal-host:not([hidden]) .xterm").click()
    return page


def pwd_round(page: Any) -> dict[str, Any]:
    echo, done = _marker()
    # Quiet first: the prompt and whatever the last round left are drawn.
    page.wait_for_timeout(500)
    result = page.evaluate(_PWD_ROUND, ["node1", f"cat /tmp/flood; {echo}", done.decode()])
    return {
        "seconds": result["ms"] / 1000,
        "bytes": result["bytes"],
        "resyncs": result["resyncs"],
        "starved_s": result["starvedMs"] / 1000,
        "frames": result["frames"],
        "renderer": result["renderer"],
    }


def pwd_size(page: Any) -> tuple[int, int]:
    return tuple(
        page.evaluate(
            "() => { const t = window.pwd.terminals.get('node1').term; return [t.cols, t.rows]; }"
        )
    )


# --- the run ----------------------------------------------------------------------------


def _off_thread(coro: Any) -> Any:
    """Run a coroutine to its end on a thread (Playwright's sync API holds this one's loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def rate(result: dict[str, Any]) -> float:
    return result["bytes"] / MIB / result["seconds"]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from bench.measure import node_container_ids

    environment = harness.Environment()
    server = harness.Server(environment, pool_size=0).start()
    static, base = serve_static()
    feeder = Feeder()
    rounds: list[dict[str, Any]] = []
    try:
        session = server.create_session()
        status, node = server.add_node(session["id"])
        if status != 201:
            raise RuntimeError(f"add node gave {status}: {node}")
        container_id = node_container_ids([session["id"]])[(session["id"], "node1")]
        say(f"writing {args.mib} MiB of base64 in the node")
        payload, _ = asyncio.run(direct_round(container_id, args.mib, write=True))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            bare_page = browser.new_page(viewport=VIEWPORT)
            for number in range(1, args.rounds + 1):
                # The direct attach first: the engine feeds attached readers in turn, so
                # the page's hub must not be attached while it runs.
                payload, direct_s = _off_thread(direct_round(container_id, args.mib, False))
                feeder.payload = payload
                direct = {"seconds": direct_s, "bytes": len(payload)}
                page = open_pwd_page(browser, server, session["id"])
                size = pwd_size(page)
                # The bare page before and after the pwd page: on a shared machine the
                # load drifts, and the pair's mean is what the pwd page had around it.
                before = bare_round(bare_page, base, feeder, size)
                cpu = harness.cpu_seconds(server.daphne.pid)
                pwd = pwd_round(page)
                pwd["server_cpu_s"] = harness.cpu_seconds(server.daphne.pid) - cpu
                after = bare_round(bare_page, base, feeder, size)
                page.close()
                # The hub lingers 10 s after the page left: it would share the TTY with
                # the flood below, and the next round's direct attach.
                time.sleep(11)
                loaded = bare_round_next_to_flood(bare_page, base, feeder, size, container_id)
                bare = {
                    "seconds": (before["seconds"] + after["seconds"]) / 2,
                    "bytes": before["bytes"],
                    "each_mib_s": [rate(before), rate(after)],
                }
                row = {
                    "round": number,
                    "size": size,
                    "direct": direct,
                    "bare": bare,
                    "pwd": pwd,
                    "bare_next_to_flood": loaded,
                }
                rounds.append(row)
                say(
                    f"round {number}: direct {rate(direct):.1f} MiB/s, bare xterm.js"
                    f" {rate(bare):.2f} MiB/s {bare['each_mib_s']}, pwd {rate(pwd):.2f} MiB/s"
                    f" ({pwd['renderer']}, {pwd['resyncs']} resyncs, starved"
                    f" {pwd['starved_s']:.2f} of {pwd['seconds']:.2f} s,"
                    f" server CPU {pwd['server_cpu_s']:.2f} s,"
                    f" {pwd['frames']} frames); bare next to a flood {rate(loaded):.2f} MiB/s"
                )
            browser.close()
        server.end_session(session["id"])
    finally:
        static.shutdown()
        server.stop()
        environment.cleanup()
    return summarise(args, rounds)


def summarise(args: argparse.Namespace, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def med(kind: str) -> float:
        return statistics.median(rate(row[kind]) for row in rounds)

    ratios = [rate(row["pwd"]) / rate(row["bare"]) for row in rounds]
    return {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "mib": args.mib,
        "rounds": rounds,
        "direct_mib_s": med("direct"),
        "bare_mib_s": med("bare"),
        "pwd_mib_s": med("pwd"),
        "bare_next_to_flood_mib_s": med("bare_next_to_flood"),
        "pwd_over_bare_next_to_flood": statistics.median(
            rate(row["pwd"]) / rate(row["bare_next_to_flood"]) for row in rounds
        ),
        "pwd_starved_share": statistics.median(
            row["pwd"]["starved_s"] / row["pwd"]["seconds"] for row in rounds
        ),
        "pwd_server_cpu_s": statistics.median(row["pwd"]["server_cpu_s"] for row in rounds),
        "pwd_over_bare": statistics.median(ratios),
        "pwd_over_bare_each": ratios,
        "renderer": rounds[0]["pwd"]["renderer"] if rounds else None,
        "resyncs": sum(row["pwd"]["resyncs"] for row in rounds),
    }


def section(result: dict[str, Any]) -> str:
    snap = result.get("snapshot")
    lines = [
        BEGIN,
        "## Terminal output in the browser (`bench/browser_throughput.py`)",
        "",
        f"Run of {result['when']} ({result['machine']}; the machine is shared with other"
        " engineers' tests, so absolute rates move several-fold between rounds; each"
        " round measures the bare page right before and right after the pwd page and the"
        f" ratio is taken round by round). {result['mib']} MiB of base64 (`cat` of a file"
        " in the node), the same bytes each way, headless Chromium as the browser tests"
        f" launch it, {len(result['rounds'])} rounds, medians.",
        "",
        "| way | MiB/s | pwd against it |",
        "|---|---|---|",
        f"| direct attach to the node (no browser) | {result['direct_mib_s']:.1f} | |",
        f"| bare xterm.js page, local websocket, all bytes sent at once |"
        f" {result['bare_mib_s']:.2f} | **{result['pwd_over_bare']:.2f}x** |",
        f"| the same bare page while the node floods a direct attach |"
        f" {result['bare_next_to_flood_mib_s']:.2f} |"
        f" {result['pwd_over_bare_next_to_flood']:.2f}x |",
        f"| pwd session page ({result['renderer']} renderer) | {result['pwd_mib_s']:.2f} | |",
        "",
        "Per round, pwd against bare: "
        + ", ".join(f"{ratio:.2f}x" for ratio in result["pwd_over_bare_each"])
        + f". Resyncs on the pwd page: {result['resyncs']} (a resync skips output). While"
        f" the pwd page drew, xterm.js had nothing to draw {result['pwd_starved_share']:.0%}"
        " of the time (everything received was drawn), and daphne used"
        f" {result['pwd_server_cpu_s']:.2f} s of CPU.",
        "",
        "Where the time went, before this change (fixed 256 KiB in flight, a client that"
        " lagged 0.5 s resynchronised, the emulator parsing a quarter of the loop through"
        " every flood): xterm.js sat idle a third of the time waiting for acks to cross a"
        " busy server, a lone slow tab was resynchronised (output skipped, then a"
        " snapshot), and the server spent ~0.9 s of CPU per 16 MiB, on a machine where that"
        " CPU is the browser's. Now the window follows the rate the client's acks show"
        " (what it draws in 0.25 s, 256 KiB to 1 MiB), a lone slow client is waited for"
        " (5 s) instead of resynchronised, and the emulator rests while it is being skipped"
        " ahead anyway. Frames stay at most 64 KiB (the bare page gets the same). WebGL:"
        " this Chromium has only SwiftShader, where xterm.js's WebGL renderer drew 3-4x"
        " slower than the DOM one (0.4 against 1.2-1.7 MiB/s on the bare page), so the page"
        " loads the WebGL addon only on a hardware GPU; the runs here use the DOM renderer."
        " What is left between pwd and the bare page is mostly the CPU the source takes"
        " (the node's `cat`, its TTY, the engine copying to the attach and the log, daphne)"
        " from a browser on the same two busy cores: the bare page next to a direct-attach"
        " flood of the same node is the fairer baseline, and the one the pwd page is"
        " compared with on the third row. The code before this change, in this bench at"
        " 12:06 UTC the same day (load 12.5): pwd 2.30 against bare 6.30 MiB/s, 0.37x.",
        "",
        f"Target: >= 0.8x the bare page; {'met' if result['pwd_over_bare'] >= 0.8 else 'NOT met'}"
        f" in this run ({result['pwd_over_bare']:.2f}x).",
    ]
    if snap:
        lines += [
            "",
            f"**Rejoining after a restart** (`bench/snapshot_rejoin.py`): {snap['clients']}"
            f" clients joining one terminal at once, a {snap['snapshot_kib']} KiB snapshot"
            " (500x200 screen, full scrollback of coloured lines): the event loop was held"
            f" {snap['render_each_ms']:.0f} ms rendering once per client, and is held"
            f" {snap['cached_ms']:.0f} ms with the shared render ({snap['ratio']:.0f}x less;"
            " the one render that is left is most of it).",
        ]
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_section(path: Path, text: str) -> None:
    doc = path.read_text()
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        doc = head + text.rstrip("\n") + rest.split(END, 1)[1]
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    path.write_text(doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=16, help="MiB of output (16)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three (3)")
    parser.add_argument("--out", type=Path, help="write browser.json here, leave the docs")
    args = parser.parse_args(argv)
    result = measure(args)
    from bench.snapshot_rejoin import measure as rejoin

    result["snapshot"] = rejoin(30, 1)
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "browser.json").write_text(json.dumps(result, indent=2))
    else:
        write_section(ROOT / "docs" / "benchmarks.md", section(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
