"""The demo lesson's first click: a runnable block clicked on a cold page served from
another origin, until the command's output is on the embedded terminal, in Chromium,
with a warm pool; against the same command through the API alone in the same run.

    .venv/bin/python bench/embed.py              # 5 trials of each, writes the section
    .venv/bin/python bench/embed.py --trials 2   # quicker
    .venv/bin/python bench/embed.py --out /tmp/e # embed.json and the section there

Each trial is a new browser context (no cache, no session) on the lesson copied from
/docs/try/ to a second local origin listed in PWD_EMBED_ORIGINS; the click starts the
session, its node (from the pool, attached ahead) and the terminal, and types the block.
The baseline is the same three steps without a browser: POST a session, POST a node,
POST the block as an exec. Before each trial the pool is full again. The section between
the ``embed`` markers in docs/benchmarks.md is rewritten.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import os
import platform
import statistics
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402
from pwd_site.testing import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- embed:begin -->", "<!-- embed:end -->"
POOL = 2
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu"]
COMMAND = "docker version --format 'Docker {{.Server.Version}} is ready'"
# The output line, not the typed command (which has no digit after "Docker ").
DONE = r"/Docker \d+\.\d+\S* is ready/"


def say(text: str) -> None:
    print(f"[embed] {text}", file=sys.stderr, flush=True)


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


@contextlib.contextmanager
def docs_site(directory: Path, port: int):
    handler = functools.partial(Quiet, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _end_all(server: harness.Server) -> None:
    from sessions_app.models import Session

    for session_id in Session.objects.filter(ended_at=None).values_list("id", flat=True):
        server.end_session(session_id)


def click_to_output(browser: Any, lesson_url: str) -> dict[str, float]:
    """Seconds from the click on the first block of a cold page to its output on screen
    (``total``), and the parts the page's resource timings show: the session request
    (``session``) and the node add (``node``)."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    try:
        page = context.new_page()
        page.goto(lesson_url)
        page.wait_for_selector("pre.pwd-run")
        started = page.evaluate(
            "() => { const t = performance.now();"
            " document.querySelector('pre.pwd-run').click(); return t; }"
        )
        handle = page.wait_for_function(
            f"""() => {{
                const rows = document.querySelector('[data-pwd-term="node1"] .xterm-rows');
                return rows && {DONE}.test(rows.innerText) ? performance.now() : 0;
            }}""",
            timeout=120_000,
            polling="raf",
        )
        done = handle.json_value()
        parts = page.evaluate(
            """(started) => {
                const found = {};
                for (const entry of performance.getEntriesByType("resource")) {
                    if (entry.startTime < started) continue;
                    if (entry.name.endsWith("/embed/sessions/")) found.session = entry.duration;
                    if (entry.name.endsWith("/nodes/")) found.node = entry.duration;
                }
                return found;
            }""",
            started,
        )
        return {
            "total": (done - started) / 1000,
            "session": parts.get("session", float("nan")) / 1000,
            "node": parts.get("node", float("nan")) / 1000,
        }
    finally:
        context.close()


def through_the_api(server: harness.Server) -> float:
    started = time.perf_counter()
    session = server.create_session()
    status, node = server.add_node(session["id"])
    if status != 201:
        raise RuntimeError(f"add node gave {status}: {node}")
    path = f"/api/sessions/{session['id']}/nodes/{node['name']}/exec/"
    status, done = server.call("POST", path, {"command": ["sh", "-c", COMMAND]})
    if status != 200:
        raise RuntimeError(f"exec gave {status}: {done}")
    return time.perf_counter() - started


def measure(environment: harness.Environment, trials: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the bench's own ORM reads
    # (pool count, sessions to end) are plain blocking calls between its steps.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

    docs_port = free_port()
    server = harness.Server(environment, pool_size=POOL)
    server.env["PWD_EMBED_ORIGINS"] = f"http://127.0.0.1:{docs_port}"
    server.env["PWD_EMBED_SESSIONS_PER_IP"] = "100000/h"
    server.start()
    docs = environment.tmp / "docs"
    docs.mkdir(exist_ok=True)
    with urllib.request.urlopen(server.url + "/docs/try/", timeout=30) as response:
        (docs / "lesson.html").write_bytes(response.read())
    embed, api, parts = [], [], []
    try:
        with docs_site(docs, docs_port) as site, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for trial in range(trials):
                for label in ("api", "embed"):
                    if not server.wait_for_pool(timeout=300):
                        raise RuntimeError("the pool did not fill")
                    time.sleep(1)  # the keeper settles (attach-ahead for a new session)
                    if label == "api":
                        api.append(through_the_api(server))
                    else:
                        parts.append(click_to_output(browser, site + "/lesson.html"))
                        embed.append(parts[-1]["total"])
                    last = (api if label == "api" else embed)[-1]
                    say(f"trial {trial + 1}/{trials} {label}: {last:.3f} s")
                    _end_all(server)
            browser.close()
    finally:
        server.stop()
    return {
        "trials": trials,
        "pool": POOL,
        "embed_click_to_output_s": embed,
        "api_session_node_exec_s": api,
        "embed_session_request_s": [p["session"] for p in parts],
        "embed_node_add_s": [p["node"] for p in parts],
        "loadavg_at_end": [round(x, 1) for x in os.getloadavg()],
    }


def section(result: dict[str, Any], command: str) -> str:
    embed = statistics.median(result["embed_click_to_output_s"])
    api = statistics.median(result["api_session_node_exec_s"])
    verdict = "met" if embed <= 1.5 else "not met"
    session = statistics.median(result["embed_session_request_s"])
    node = statistics.median(result["embed_node_add_s"])

    def row(label: str, values: list[float]) -> str:
        value = statistics.median(values)
        spread = f"{min(values):.2f}-{max(values):.2f} s"
        return f"| {label} | {value:.2f} s | {spread} | {value / api:.2f}x |"

    return "\n".join(
        [
            BEGIN,
            "## Embed: the demo lesson's first click (`bench/embed.py`)",
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} "
            f"({platform.machine()}, {os.cpu_count()} cores), with `{command}`: medians of "
            f"{result['trials']} trials, a warm pool of {result['pool']}. The machine was "
            "shared with other engineers' test runs at the time (load average "
            f"{' '.join(map(str, result['loadavg_at_end']))} at the end), so absolute "
            "figures are pessimistic.",
            "",
            "| | median (p50) | range | vs API alone |",
            "|---|---|---|---|",
            row(
                "click on a block (cold page, other origin) to its output on the terminal",
                result["embed_click_to_output_s"],
            ),
            row("baseline: POST session, POST node, POST exec", result["api_session_node_exec_s"]),
            "",
            f"Target p50 <= 1.5 s: **{verdict}** ({embed:.2f} s). Where the click's time "
            "goes (medians, from the page's resource timings): the session request "
            f"{session:.2f} s (the session's "
            "overlay network), the node add "
            f"{node:.2f} s (a pool node; the add "
            "waits for its attach to the new overlay, started when the session was), and "
            "the rest, the terminal websocket opening, the block typed and the answer drawn, "
            f"{embed - session - node:.2f} s. "
            "The baseline does the same engine work, so the embed's own cost is the ratio; "
            "the target needs the engine's overlay attach to be faster than on this "
            "machine under load (docs/benchmarks.md, pool add).",
            END,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write embed.json and the section here")
    args = parser.parse_args(argv)
    environment = harness.Environment()
    try:
        result = measure(environment, args.trials)
    finally:
        say("removing everything the bench created")
        environment.cleanup()
    command = "python bench/embed.py" + (f" --trials {args.trials}" if args.trials != 5 else "")
    text = section(result, command)
    print(text)
    out = args.out or ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "embed.json").write_text(json.dumps(result, indent=2) + "\n")
    from bench.profiles import write_section

    target = (args.out / "benchmarks.md") if args.out else ROOT / "docs" / "benchmarks.md"
    write_section(text, target, BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
