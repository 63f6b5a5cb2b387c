"""What metrics cost: a /metrics scrape and a /api/capacity/ answer against /healthz on
the same live server (the baseline, measured in the same run), with a realistic load of
rows (sessions, nodes, counters); and a count recorded in-process (metrics.tally.add)
against prometheus-client's own in-memory counter (``labels().inc()``).

    .venv/bin/python bench/metrics.py [--sessions 100] [--nodes-per-session 3] [--rounds 200]

Writes bench/results/metrics.json and prints a table. The rows have no containers (the
reaper is not running): what is timed is the database and the exposition, not nodes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pwd_site.testing import ROOT, live_server, run_python  # noqa: E402

FILL = """
from django.utils import timezone
from metrics import tally
from sessions_app.models import Node, Session
sessions = [Session(max_nodes=5) for _ in range({sessions})]
Session.objects.bulk_create(sessions)
Node.objects.bulk_create(
    Node(session=s, name=f"node{{n}}", hostname=f"node{{n}}", status="running", container_id="x")
    for s in sessions for n in range(1, {per} + 1)
)
for seconds in (0.03, 0.4, 0.7, 1.5, 3.0, 12.0):
    tally.observe_add_node(seconds)
tally.reaper_pass(0)
tally.keeper_pass(True)
assert tally.flush()
"""


def _median_ms(url: str, rounds: int) -> tuple[float, float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def _in_process(calls: int) -> dict[str, float]:
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pwd_site.settings")
    import django

    django.setup()
    from prometheus_client import CollectorRegistry
    from prometheus_client import Counter as LibraryCounter

    from metrics import tally

    library = LibraryCounter("bench", "", ["host", "kind"], registry=CollectorRegistry())

    def bare() -> None:
        library.labels("local", "x").inc()

    def timed(func) -> float:
        started = time.perf_counter()
        for _ in range(calls):
            func()
        return (time.perf_counter() - started) / calls * 1e9

    baseline = statistics.median(timed(bare) for _ in range(5))
    counted = statistics.median(
        timed(lambda: tally.add("bench_only", 1, "local", "x")) for _ in range(5)
    )
    with tally._lock:  # nothing of this reaches a database
        tally._pending.clear()
    return {
        "tally_add_ns": counted,
        "prometheus_counter_inc_ns": baseline,
        "ratio": counted / baseline,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--nodes-per-session", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    results: dict[str, object] = {
        "sessions": args.sessions,
        "nodes": args.sessions * args.nodes_per_session,
    }
    with live_server(None, prefix="pwdbench", PWD_LOG_LEVEL="WARNING", PWD_POOL_SIZE="0") as server:
        filled = run_python(
            [
                "-c",
                "import django; django.setup()\n"
                + FILL.format(sessions=args.sessions, per=args.nodes_per_session),
            ],
            server.env,
        )
        if filled.returncode != 0:
            raise SystemExit(filled.stderr)
        for name, path in (
            ("healthz", "/healthz"),
            ("metrics", "/metrics"),
            ("capacity", "/api/capacity/"),
        ):
            _median_ms(server.url + path, 10)  # warm up
            p50, p95 = _median_ms(server.url + path, args.rounds)
            results[name] = {"p50_ms": p50, "p95_ms": p95}
    for name in ("metrics", "capacity"):
        results[name]["ratio_to_healthz"] = results[name]["p50_ms"] / results["healthz"]["p50_ms"]
    results["in_process"] = _in_process(200_000)
    with open("/proc/loadavg") as loadavg:
        results["load_average"] = loadavg.read().split()[0]
    out = ROOT / "bench" / "results" / "metrics.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
