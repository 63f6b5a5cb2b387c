"""Live stats: the engine's and the server's CPU with 50 watched nodes, against the same
50 nodes with nobody watching.

    .venv/bin/python bench/stats.py                      # 50 nodes, 3 rounds of 20 s
    .venv/bin/python bench/stats.py --nodes 10 --rounds 2 --seconds 10   # quicker
    .venv/bin/python bench/stats.py --out /tmp/s         # write stats.json and the section there

One server; ``--nodes`` nodes in sessions of five. Three states, measured in turn in each
round so that all see the same machine: nobody watching (the baseline); every session
watched (one events websocket each, as an open page: stats readers, and the port
watches that come with a viewer); and the bare stats streams (the bench process itself
opens one engine stats stream per node and reads it, nobody watching the server), which
isolates what streaming stats costs the engine. The engine is dockerd plus its
containerd; CPU is the processes' own user+system time over the window, in % of one core.
The section between the ``stats`` markers in docs/benchmarks.md is rewritten.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402
from bench.profiles import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- stats:begin -->", "<!-- stats:end -->"
PER_SESSION = 5
STATES = ("idle", "watched", "streams")


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def engine_pids() -> list[int]:
    """The host's dockerd (the one serving /var/run/docker.sock, run by root) and its
    containerd; the nodes' own engines run as remapped users and are left out."""
    out = subprocess.run(
        ["ps", "-eo", "pid,ppid,uid,comm"], capture_output=True, text=True, check=True
    ).stdout.split("\n")[1:]
    rows = [line.split() for line in out if line.strip()]
    dockerd = [int(r[0]) for r in rows if r[3] == "dockerd" and r[2] == "0" and r[1] == "1"]
    if len(dockerd) != 1:
        raise RuntimeError(f"expected one host dockerd, found {dockerd}")
    containerd = [int(r[0]) for r in rows if r[3] == "containerd" and int(r[1]) == dockerd[0]]
    return dockerd + containerd


def make_nodes(server: harness.Server, count: int) -> list[dict[str, Any]]:
    """``count`` nodes in sessions of PER_SESSION; returns the sessions."""
    sessions = [server.create_session() for _ in range(-(-count // PER_SESSION))]
    wanted = [s["id"] for s in sessions for _ in range(PER_SESSION)][:count]

    def add(session_id: str) -> None:
        status, body = server.add_node(session_id)
        if status != 201:
            raise RuntimeError(f"add node gave {status}: {body}")

    # One add at a time per session (names are chosen in turn), sessions in parallel.
    def fill(session_id: str) -> None:
        for _ in range(wanted.count(session_id)):
            add(session_id)

    with ThreadPoolExecutor(max_workers=len(sessions)) as pool:
        list(pool.map(fill, [s["id"] for s in sessions]))
    return sessions


class Viewers:
    """One events websocket per session in a thread of its own, counting node.stats."""

    def __init__(self, server: harness.Server, sessions: list[dict[str, Any]]) -> None:
        self.urls = [f"{server.ws_base}/ws/sessions/{s['id']}/events/" for s in sessions]
        self.heard: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def _listen(self, url: str) -> None:
        import websockets.sync.client

        with websockets.sync.client.connect(url, open_timeout=30) as viewer:
            while not self.stop.is_set():
                try:
                    event = json.loads(viewer.recv(timeout=0.5))
                except TimeoutError:
                    continue
                if event.get("type") == "node.stats":
                    key = f"{url}#{event['name']}"
                    with self.lock:
                        self.heard[key] = self.heard.get(key, 0) + 1

    def start(self) -> None:
        self.stop.clear()
        self.threads = [threading.Thread(target=self._listen, args=(u,)) for u in self.urls]
        for thread in self.threads:
            thread.start()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def stream_directly(container_ids: list[str], seconds: float) -> int:
    """Open one engine stats stream per container in this process and read them for
    ``seconds``; returns how many samples came."""
    from sessions_app.engine import stats as engine_stats

    async def read(container_id: str, until: float) -> int:
        stream = await engine_stats.open_stats(container_id)
        count = 0
        try:
            while time.monotonic() < until and await stream.next() is not None:
                count += 1
        finally:
            await stream.close()
        return count

    async def main() -> int:
        until = time.monotonic() + seconds
        return sum(await asyncio.gather(*(read(cid, until) for cid in container_ids)))

    return asyncio.run(main())


def measure(environment: harness.Environment, args: argparse.Namespace) -> dict[str, Any]:
    from django.conf import settings

    from sessions_app.models import Node

    server = harness.Server(environment, pool_size=0, prepare=False)
    server.env["PWD_MAX_NODES"] = str(PER_SESSION)
    server.start()
    try:
        say(f"starting {args.nodes} nodes")
        began = time.monotonic()
        sessions = make_nodes(server, args.nodes)
        say(f"{args.nodes} nodes up in {time.monotonic() - began:.0f} s; settling {args.settle} s")
        time.sleep(args.settle)
        containers = list(Node.objects.values_list("container_id", flat=True))
        engine = engine_pids()
        daphne = [server.daphne.pid]
        viewers = Viewers(server, sessions)
        samples: dict[str, dict[str, list[float]]] = {
            state: {"engine": [], "server": [], "bench": []} for state in STATES
        }
        streamed = []
        bench = [os.getpid()]
        for round_number in range(args.rounds):
            for state in STATES:
                say(f"round {round_number + 1}/{args.rounds}: {state}, {args.seconds} s")
                if state == "watched":
                    viewers.start()
                    time.sleep(5)  # the readers and port watches start; not measured
                if state == "streams":
                    during = lambda s: streamed.append(stream_directly(containers, s))  # noqa: E731
                else:
                    during = None
                pids = engine + daphne + bench
                before = {pid: harness.cpu_seconds(pid) for pid in pids}
                start = time.monotonic()
                if during is None:
                    time.sleep(args.seconds)
                else:
                    during(args.seconds)
                elapsed = time.monotonic() - start
                used = {pid: harness.cpu_seconds(pid) - before[pid] for pid in pids}
                samples[state]["engine"].append(sum(used[p] for p in engine) / elapsed * 100)
                samples[state]["server"].append(sum(used[p] for p in daphne) / elapsed * 100)
                samples[state]["bench"].append(sum(used[p] for p in bench) / elapsed * 100)
                if state == "watched":
                    viewers.close()
                # Nothing carries into the next state: port watches linger 10 s.
                time.sleep(15 if state == "watched" else 3)
        heard_nodes = len(viewers.heard)
        for session in sessions:
            server.end_session(session["id"])
    finally:
        server.stop()
    result: dict[str, Any] = {
        "nodes": args.nodes,
        "sessions": len(sessions),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "interval_s": settings.PWD_STATS_INTERVAL,
        "nodes_with_stats_heard": heard_nodes,
        "samples_per_node_per_s": (
            statistics.median(streamed) / args.nodes / args.seconds if streamed else 0
        ),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    for state in STATES:
        for who in ("engine", "server", "bench"):
            result[f"{state}_{who}_cpu"] = statistics.median(samples[state][who])
            result[f"{state}_{who}_cpu_all"] = samples[state][who]
    return result


def section(result: dict[str, Any], command: str) -> str:
    def versus(value: float, base: float) -> str:
        # A process that slept through the baseline has no ratio; say how much it added.
        if base >= 0.5:
            return f"{value:.1f} % ({value / base:.2f}x)"
        return f"{value:.1f} % (baseline {base:.1f} %)"

    def row(label: str, state: str, note: str) -> str:
        engine = result[f"{state}_engine_cpu"]
        server = result[f"{state}_server_cpu"]
        extra = (engine - result["idle_engine_cpu"]) / result["nodes"]
        return (
            f"| {label} | {versus(engine, result['idle_engine_cpu'])} "
            f"| {versus(server, result['idle_server_cpu'])} | {extra:+.2f} % | {note} |"
        )

    n = result["nodes"]
    return "\n".join(
        [
            BEGIN,
            f"## Live stats: engine and server CPU with {n} watched nodes",
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} "
            f"({platform.machine()}, {os.cpu_count()} cores, shared with other engineers' "
            f"test runs while it ran: load average {result['loadavg_at_end'][1]} at the "
            f"end), with `{command}`. {n} idle nodes in {result['sessions']} sessions; "
            f"medians of {result['rounds']} windows of {result['seconds']} s per state, "
            "the states taken in turn in each round. CPU is the processes' own time in % of "
            "one core; the ratio is against nobody watching, in the same run. The engine is "
            "the host's dockerd and its containerd (the nodes' own engines are not counted).",
            "",
            "| state | engine CPU | server (daphne) CPU | engine, more per node | |",
            "|---|---|---|---|---|",
            row("nobody watching (baseline)", "idle", "no reader, no stream"),
            row(
                f"every session watched ({result['sessions']} events sockets)",
                "watched",
                f"`node.stats` heard for {result['nodes_with_stats_heard']} of {n} nodes; "
                "includes the port watches a viewer starts",
            ),
            row(
                f"{n} bare stats streams, nobody watching",
                "streams",
                f"read by the bench process ({result['streams_bench_cpu']:.1f} % of a core "
                f"for {n} streams, {result['samples_per_node_per_s']:.2f} samples a node a "
                "second): the engine's cost of streaming stats alone",
            ),
            "",
            "The engine samples every stats stream once a second whatever the interval, so "
            "its cost grows with the nodes being watched, not with the viewers (one stream "
            "per node however many tabs are open) and is nothing for nodes nobody watches. "
            "Numbers on this shared machine move by several % of a core from window to "
            "window; `bench/results/stats.json` has every window.",
            END,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--settle", type=float, default=30)
    parser.add_argument("--out", type=Path, help="write stats.json and the section here")
    args = parser.parse_args(argv)
    environment = harness.Environment()
    try:
        result = measure(environment, args)
    finally:
        say("removing everything the bench created")
        environment.cleanup()
    command = "python bench/stats.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    out = args.out or ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "stats.json").write_text(json.dumps(result, indent=2) + "\n")
    text = section(result, command)
    print(text)
    write_section(
        text,
        (args.out / "benchmarks.md") if args.out else ROOT / "docs" / "benchmarks.md",
        BEGIN,
        END,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
