"""Workshops: seats made ahead (20 seats x 1 node, by provisioner parallelism), a join to
a shell prompt in Chromium against opening an existing seat's page, and the classroom
wall watching 30 seats that each print a line a second.

    .venv/bin/python bench/workshops.py                         # everything, writes the section
    .venv/bin/python bench/workshops.py --seats 6 --trials 3 --wall-seats 8   # quicker
    .venv/bin/python bench/workshops.py --out /tmp/w   # workshops.json and the section there

**Provisioning**: a workshop of ``--seats`` seats of one node, made by one
``manage.py workshops --parallelism P`` for each P of ``--parallelism``; the time from the
POST until the roster shows every seat ready (polled every 0.2 s), then the workshop is
ended and its nodes removed before the next P. No warm pool: every node is a cold start.

**Join**: with ready seats, each trial a new browser context on the join page
(``/w/<code>/``), the name typed; the time from the click on Join until node1's prompt is
drawn on the session page. Baseline, same run: a new context opening an already-joined
seat's session page (``/p/<id>/``), from navigation start to its prompt: the page and
terminal alone.

**Wall**: ``--wall-seats`` seats joined by as many trainees, each node's shell running
``while :; do date; sleep 1; done`` (typed through its terminal, which is then closed);
the server's CPU over ``--window`` seconds without a wall (the baseline), then with the
instructor's wall open in Chromium (1920x1080): the server's CPU, the page's frame rate
(requestAnimationFrame over the window), its JS heap and the thumbnails' updates a second.

The section between the ``workshops`` markers in docs/benchmarks.md is rewritten.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import websockets.sync.client  # noqa: E402

from bench import harness  # noqa: E402
from bench.hot_start import WATCH_PROMPT  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- workshops:begin -->", "<!-- workshops:end -->"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
]
PASSWORD = "bench-password-not-secret"
PROMPT_WITHIN = 60.0
LOOP = "while :; do date; sleep 1; done\r"
# On the wall page: frames drawn, and thumbnail updates (any change under #seats).
WALL_PROBE = r"""
(() => {
  window.__frames = 0;
  window.__updates = 0;
  const tick = () => { window.__frames++; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  const watch = () => {
    const grid = document.querySelector("#seats, .seats, main");
    if (!grid) { setTimeout(watch, 50); return; }
    new MutationObserver((records) => { window.__updates += records.length; })
      .observe(grid, { subtree: true, childList: true, characterData: true });
  };
  document.addEventListener("DOMContentLoaded", watch);
})();
"""


COUNTERS = "() => [window.__frames, window.__updates, performance.now()]"


def say(text: str) -> None:
    print(f"[workshops] {text}", file=sys.stderr, flush=True)


class Bench:
    """The server, an instructor's API client, and the provisioner."""

    def __init__(self, environment: harness.Environment) -> None:
        self.server = harness.Server(environment, pool_size=0)
        self.server.env["PWD_WORKSHOP_MAX_SEATS"] = "500"
        self.server.start()
        done = self.server.manage("instructor", "teacher", "--password", PASSWORD)
        if done.returncode:
            raise RuntimeError(done.stderr)
        self.api = httpx.Client(
            base_url=self.server.url,
            headers={"Authorization": f"Token {done.stdout.strip()}"},
            timeout=120,
        )
        self.provisioner: Any = None

    def provision(self, parallelism: int) -> None:
        if self.provisioner is not None:
            self.provisioner.stop()
        self.provisioner = self.server.spawn(
            "workshops",
            ["manage.py", "workshops", "--parallelism", str(parallelism), "--interval", "0.2"],
        )

    def create(self, seats: int, title: str) -> dict[str, Any]:
        response = self.api.post("/api/workshops/", json={"title": title, "seats": seats})
        if response.status_code != 201:
            raise RuntimeError(f"create gave {response.status_code}: {response.text}")
        return response.json()

    def until_ready(self, workshop_id: str, within: float = 900) -> float:
        started = time.perf_counter()
        while True:
            seats = self.api.get(f"/api/workshops/{workshop_id}/").json()["seats"]
            if all(s["status"] in ("ready", "taken") for s in seats):
                return time.perf_counter() - started
            failed = [s for s in seats if s["status"] == "failed"]
            if failed or time.perf_counter() - started > within:
                raise RuntimeError(f"seats not ready: {failed or seats}")
            time.sleep(0.2)

    def end(self, workshop_id: str) -> None:
        self.api.delete(f"/api/workshops/{workshop_id}/")
        deadline = time.monotonic() + 120
        while self.server.objects().containers and time.monotonic() < deadline:
            nodes = [
                c for c in self.server.objects().containers if c["Labels"].get("pwd.role") == "node"
            ]
            if not nodes:
                return
            time.sleep(0.5)

    def close(self) -> None:
        self.server.stop()


# --- provisioning -------------------------------------------------------------------


def measure_provisioning(bench: Bench, seats: int, levels: list[int]) -> list[dict[str, Any]]:
    runs = []
    for parallelism in levels:
        bench.provision(parallelism)
        started = time.perf_counter()
        workshop = bench.create(seats, f"provision {parallelism}")
        ready = bench.until_ready(workshop["id"])
        total = time.perf_counter() - started
        runs.append({"parallelism": parallelism, "seats": seats, "ready_s": total})
        say(f"{seats} seats with parallelism {parallelism}: {total:.1f} s ({ready:.1f} s polled)")
        bench.end(workshop["id"])
    return runs


# --- join ---------------------------------------------------------------------------


def join_to_prompt(browser: Any, url: str, name: str) -> tuple[float, str]:
    """Seconds from the click on Join to node1's prompt, and the seat's session page."""
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    context.add_init_script(WATCH_PROMPT)
    page = context.new_page()
    page.goto(url)
    page.fill("#name", name)
    clicked = page.evaluate(
        "() => { const t = performance.timeOrigin + performance.now();"
        " document.getElementById('join').click(); return t; }"
    )
    page.wait_for_url("**/p/*/**", wait_until="commit", timeout=PROMPT_WITHIN * 1000)
    page.wait_for_function("() => window.__promptAt", polling=50, timeout=PROMPT_WITHIN * 1000)
    prompt = page.evaluate("() => window.__promptAt")
    session_url = page.evaluate("() => location.origin + location.pathname")
    context.close()
    return (prompt - clicked) / 1000, session_url


def open_to_prompt(browser: Any, session_url: str) -> float:
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    context.add_init_script(WATCH_PROMPT)
    page = context.new_page()
    page.goto(session_url)
    try:
        page.wait_for_function("() => window.__promptAt", polling=50, timeout=PROMPT_WITHIN * 1000)
    except Exception:
        say(f"no prompt on {session_url}: {page.evaluate('() => document.body.innerText')!r}")
        raise
    seconds = page.evaluate("() => (window.__promptAt - performance.timeOrigin) / 1000")
    context.close()
    return seconds


def measure_join(bench: Bench, browser: Any, trials: int) -> dict[str, Any]:
    bench.provision(2)
    workshop = bench.create(trials, "join")
    bench.until_ready(workshop["id"])
    time.sleep(2)  # the provisioner's last node settles
    joins, opens = [], []
    for trial in range(trials):
        seconds, session_url = join_to_prompt(browser, workshop["join_url"], f"Trainee {trial}")
        joins.append(seconds)
        opens.append(open_to_prompt(browser, session_url))
        say(f"trial {trial + 1}/{trials}: join {joins[-1]:.3f} s, open {opens[-1]:.3f} s")
    bench.end(workshop["id"])
    return {"join_to_prompt_s": joins, "open_seat_page_s": opens}


# --- the wall -----------------------------------------------------------------------


def start_loops(bench: Bench, workshop: dict[str, Any]) -> None:
    """Every seat joined by its own trainee, its node1 printing a line a second."""
    for number in range(1, len(workshop["seats"]) + 1):
        trainee = httpx.Client(base_url=bench.server.url, timeout=60)
        joined = trainee.post(
            f"/api/workshops/join/{workshop['join_code']}/", json={"name": f"Trainee {number}"}
        )
        if joined.status_code != 201:
            raise RuntimeError(f"join gave {joined.status_code}: {joined.text}")
        path = joined.json()["nodes"][0]["terminal"]
        with websockets.sync.client.connect(bench.server.ws_url + path, open_timeout=30) as ws:
            ws.send(json.dumps({"type": "input", "data": LOOP}))
            deadline = time.monotonic() + 20
            seen = b""
            while b"UTC" not in seen and time.monotonic() < deadline:
                with_timeout = ws.recv(timeout=5)
                if isinstance(with_timeout, bytes):
                    seen += with_timeout


def server_cpu(bench: Bench, seconds: float) -> float:
    """The web process's CPU over ``seconds``, in percent of one core."""
    pid = bench.server.daphne.pid
    before, started = harness.cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (harness.cpu_seconds(pid) - before) / (time.monotonic() - started)


def measure_wall(bench: Bench, browser: Any, seats: int, window: float) -> dict[str, Any]:
    bench.provision(4)
    workshop = bench.create(seats, "wall")
    bench.until_ready(workshop["id"])
    start_loops(bench, workshop)
    say(f"{seats} seats print a line a second; baseline for {window:.0f} s")
    baseline = server_cpu(bench, window)
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    context.add_init_script(WALL_PROBE)
    page = context.new_page()
    page.goto(bench.server.url + "/accounts/login/")
    page.fill("#id_username", "teacher")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/workshops/")
    page.goto(bench.server.url + f"/workshops/{workshop['id']}/")
    time.sleep(5)  # every thumbnail has its first screen
    frames0, updates0, t0 = page.evaluate(
        "() => [window.__frames, window.__updates, performance.now()]"
    )
    with_wall = server_cpu(bench, window)
    frames1, updates1, t1 = page.evaluate(
        "() => [window.__frames, window.__updates, performance.now()]"
    )
    heap = page.evaluate("() => performance.memory ? performance.memory.usedJSHeapSize : 0")
    elapsed = (t1 - t0) / 1000
    context.close()
    bench.end(workshop["id"])
    return {
        "seats": seats,
        "window_s": window,
        "server_cpu_percent_without_wall": baseline,
        "server_cpu_percent_with_wall": with_wall,
        "wall_fps": (frames1 - frames0) / elapsed,
        "wall_dom_updates_per_s": (updates1 - updates0) / elapsed,
        "wall_js_heap_mib": heap / 2**20,
    }


# --- the report ---------------------------------------------------------------------


def section(result: dict[str, Any], command: str) -> str:
    lines = [
        BEGIN,
        "## Workshops (`bench/workshops.py`)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} "
        f"({platform.machine()}, {os.cpu_count()} cores), with `{command}`. The machine was "
        "shared with other engineers' test runs (load average "
        f"{' '.join(map(str, result['loadavg_at_end']))} at the end), so absolute figures "
        "are pessimistic; ratios are within the run.",
        "",
    ]
    runs = result.get("provisioning") or []
    if runs:
        first = runs[0]["ready_s"]
        lines += [
            f"**Provisioning** {runs[0]['seats']} seats x 1 node (cold starts, no warm pool), "
            "from the POST until every seat is ready:",
            "",
            "| provisioner parallelism | all ready | per seat | vs parallelism "
            f"{runs[0]['parallelism']} |",
            "|---|---|---|---|",
        ]
        for run in runs:
            lines.append(
                f"| {run['parallelism']} | {run['ready_s']:.1f} s | "
                f"{run['ready_s'] / run['seats']:.2f} s | {run['ready_s'] / first:.2f}x |"
            )
        lines += [
            "",
            "Each seat is a session, its overlay network and a node whose inner dockerd boots; "
            "the engine overlaps those boots, so seats made at once still pay off past the "
            "core count (PWD_WORKSHOP_PARALLELISM defaults to 4).",
            "",
        ]
    join = result.get("join")
    if join:
        j = statistics.median(join["join_to_prompt_s"])
        o = statistics.median(join["open_seat_page_s"])
        verdict = "met" if j <= 0.5 else "not met"
        lines += [
            f"**Join to a shell prompt** in Chromium, seats ready, {len(join['join_to_prompt_s'])} "
            "trials (each a new browser context):",
            "",
            "| | p50 | range | vs baseline |",
            "|---|---|---|---|",
            f"| click on Join (name typed) to node1's prompt on the session page | {j:.3f} s | "
            f"{min(join['join_to_prompt_s']):.3f}-{max(join['join_to_prompt_s']):.3f} s | "
            f"{j / o:.2f}x |",
            f"| baseline: opening that seat's session page to its prompt | {o:.3f} s | "
            f"{min(join['open_seat_page_s']):.3f}-{max(join['open_seat_page_s']):.3f} s | 1.00x |",
            "",
            f"Target p50 <= 0.5 s: **{verdict}** ({j:.3f} s). The join itself is one request "
            "(a conditional UPDATE claims a ready seat); the rest is the session page and "
            "its terminal, which the baseline measures alone.",
            "",
        ]
    wall = result.get("wall")
    if wall:
        without = wall["server_cpu_percent_without_wall"]
        with_wall = wall["server_cpu_percent_with_wall"]
        lines += [
            f"**The wall** with {wall['seats']} seats each printing a line a second, over "
            f"{wall['window_s']:.0f} s (1920x1080):",
            "",
            "| | value |",
            "|---|---|",
            f"| web process CPU, no wall open (baseline) | {without:.1f} % of a core |",
            f"| web process CPU, the wall open | {with_wall:.1f} % of a core |",
            f"| the wall page's frame rate | {wall['wall_fps']:.0f} fps |",
            f"| thumbnail DOM updates | {wall['wall_dom_updates_per_s']:.0f} a second |",
            f"| the wall page's JS heap | {wall['wall_js_heap_mib']:.1f} MiB |",
            "",
            "The wall gets each visible seat's screen as text at most once a second, only "
            "when it changed (one server-side stream per seat terminal, shared with the "
            "trainee's own tab); hidden seats cost nothing per keystroke.",
            "",
        ]
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seats", type=int, default=20)
    parser.add_argument("--parallelism", default="1,2,4")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--wall-seats", type=int, default=30)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--skip", default="", help="comma list of provisioning,join,wall")
    parser.add_argument("--out", type=Path, help="write workshops.json and the section here")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    from playwright.sync_api import sync_playwright

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    environment = harness.Environment()
    result: dict[str, Any] = {}
    try:
        bench = Bench(environment)
        try:
            if "provisioning" not in skip:
                levels = [int(x) for x in args.parallelism.split(",")]
                result["provisioning"] = measure_provisioning(bench, args.seats, levels)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                if "join" not in skip:
                    result["join"] = measure_join(bench, browser, args.trials)
                if "wall" not in skip:
                    result["wall"] = measure_wall(bench, browser, args.wall_seats, args.window)
                browser.close()
        finally:
            bench.close()
    finally:
        say("removing everything the bench created")
        environment.cleanup()
    result["loadavg_at_end"] = [round(x, 1) for x in os.getloadavg()]
    command = "python bench/workshops.py" + (" " + " ".join(argv) if argv else "")
    text = section(result, command.strip())
    print(text)
    out = args.out or ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "workshops.json").write_text(json.dumps(result, indent=2) + "\n")
    from bench.profiles import write_section

    target = (args.out / "benchmarks.md") if args.out else ROOT / "docs" / "benchmarks.md"
    write_section(text, target, BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
