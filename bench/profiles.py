"""What isolation costs: node start, pool add, memory and echo under each node profile.

    .venv/bin/python bench/profiles.py              # 8 trials of each, writes the section
    .venv/bin/python bench/profiles.py --trials 2   # quicker
    .venv/bin/python bench/profiles.py --out /tmp/p # write profiles.json and the section there

Every profile the engine has is measured in the same run: ``userns`` where the engine
remaps users, and ``caps`` (real root, today's profile before the escape review). The
section between the ``profiles`` markers in docs/benchmarks.md is rewritten.
"""

from __future__ import annotations

import argparse
import asyncio
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
BEGIN, END = "<!-- profiles:begin -->", "<!-- profiles:end -->"


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _use_profile(name: str) -> Any:
    from django.conf import settings

    from sessions_app import engine

    settings.PWD_NODE_PROFILE = name
    chosen = engine.detect_profile()
    engine.use_profile(chosen)
    return chosen


def _floor_and_memory(trials: int) -> tuple[list[float], list[int], list[str]]:
    """Seconds from create to the inner engine answering, then each idle node's memory."""
    from sessions_app import engine

    starts, handles = [], []
    for _ in range(trials):
        began = time.perf_counter()
        handle = engine.create_node(None, "node1", None, role=engine.ROLE_PROBE)
        starts.append(time.perf_counter() - began)
        handles.append(handle.container_id)
    time.sleep(10)  # let the inner engines settle before memory is read
    memory = [engine.memory_usage(container_id) for container_id in handles]
    return starts, memory, handles


async def _echo(container_id: str, samples: int) -> list[float]:
    from bench.terminal import DirectTerminal, echo_latencies, ready_shell

    term = await DirectTerminal.open(container_id)
    try:
        await ready_shell(term)
        return await echo_latencies(term, samples)
    finally:
        await term.close()


def _exec_echo(container_id: str, samples: int) -> list[float]:
    from sessions_app import engine

    times = []
    for _ in range(samples):
        began = time.perf_counter()
        engine.exec_in_node(container_id, ["echo", "hi"], timeout=10, max_output=64)
        times.append(time.perf_counter() - began)
    return times


def _pool_add(environment: harness.Environment, name: str, trials: int) -> list[float]:
    from bench import measure

    server = harness.Server(environment, pool_size=2)
    server.env["PWD_NODE_PROFILE"] = name
    server.start()
    try:
        if not server.wait_for_pool():
            raise RuntimeError(f"the pool did not fill under the {name} profile")
        result = measure.add_nodes(server, trials)
        if result.errors:
            raise RuntimeError(f"pool adds failed under {name}: {result.errors[:3]}")
        return result.first + result.next
    finally:
        server.stop()


def measure_profile(environment: harness.Environment, name: str, trials: int) -> dict[str, Any]:
    from sessions_app import engine

    profile = _use_profile(name)
    say(f"{name}: {trials} node starts (create until the inner engine answers)")
    starts, memory, handles = _floor_and_memory(trials)
    try:
        say(f"{name}: keystroke echo (direct attach) and exec round trips")
        echo = asyncio.run(_echo(handles[0], 60))
        exec_echo = _exec_echo(handles[0], 20)
    finally:
        for container_id in handles:
            engine.remove_node(container_id)
    say(f"{name}: add node from the warm pool through the API, {trials}x")
    pool = _pool_add(environment, name, trials)
    return {
        "profile": name,
        "isolates": profile.isolates,
        "start_p50_s": median(starts),
        "pool_add_p50_s": median(pool),
        "idle_memory_mib": median([m / 2**20 for m in memory]),
        "echo_p50_ms": median(echo) * 1000,
        "exec_p50_ms": median(exec_echo) * 1000,
        "trials": trials,
    }


def section(results: list[dict[str, Any]], command: str) -> str:
    base = next((r for r in results if r["profile"] == "caps"), results[0])
    lines = [
        BEGIN,
        "## Node profiles: what isolation costs",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} "
        f"({platform.machine()}, {os.cpu_count()} cores), with `{command}`. "
        "Medians; the ratio is against `caps` (real root, the profile before the escape "
        "review) in the same run.",
        "",
        "| profile | isolates | node start | pool add (API) | idle node memory"
        " | keystroke echo | exec `echo` |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(result: dict[str, Any], key: str, unit: str, digits: int) -> str:
        value = result[key]
        ratio = value / base[key] if base[key] else float("nan")
        suffix = "" if result is base else f" ({ratio:.2f}x)"
        return f"{value:.{digits}f} {unit}{suffix}"

    for result in results:
        lines.append(
            f"| `{result['profile']}` | {'yes' if result['isolates'] else 'no'} "
            f"| {cell(result, 'start_p50_s', 's', 2)} | {cell(result, 'pool_add_p50_s', 's', 3)} "
            f"| {cell(result, 'idle_memory_mib', 'MiB', 0)} "
            f"| {cell(result, 'echo_p50_ms', 'ms', 1)} "
            f"| {cell(result, 'exec_p50_ms', 'ms', 0)} |"
        )
    lines += [
        "",
        "Node start includes making and mounting the node's own disk (`PWD_NODE_DISK`) and, "
        "under `userns`, handing the node its cgroups.",
        END,
    ]
    return "\n".join(lines)


def write_section(text: str, path: Path, begin: str = BEGIN, end: str = END) -> None:
    """Put ``text`` (which starts with ``begin`` and ends with ``end``) in place of the
    section between those markers in ``path``, or at its end."""
    current = path.read_text() if path.exists() else ""
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        tail = rest.split(end, 1)[1]
        current = head + text + tail
    else:
        current = current.rstrip() + "\n\n" + text + "\n"
    path.write_text(current)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--out", type=Path, help="write profiles.json and the section here")
    args = parser.parse_args(argv)
    environment = harness.Environment()
    from sessions_app import engine

    names = (["userns"] if engine.engine_remaps_users() else []) + ["caps"]
    try:
        results = [measure_profile(environment, name, args.trials) for name in names]
    finally:
        say("removing everything the bench created")
        environment.cleanup()
    command = "python bench/profiles.py" + (f" --trials {args.trials}" if args.trials != 8 else "")
    text = section(results, command)
    print(text)
    out = args.out or ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "profiles.json").write_text(json.dumps(results, indent=2) + "\n")
    write_section(
        text, (args.out / "benchmarks.md") if args.out else ROOT / "docs" / "benchmarks.md"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
