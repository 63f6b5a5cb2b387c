"""Targets, and the two outputs: ``latest.json`` for tools, ``benchmarks.md`` for people."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NOTES = Path(__file__).resolve().parent / "NOTES.md"


@dataclass(frozen=True)
class Target:
    key: str
    text: str
    met: Callable[[dict[str, Any]], bool]


def _finite(*values: float) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


TARGETS = [
    Target(
        "add_node_pool_p50_s",
        "add node from the pool: p50 <= 0.3 s",
        lambda r: _finite(r["add_node_pool_p50_s"]) and r["add_node_pool_p50_s"] <= 0.3,
    ),
    Target(
        "add_node_cold_p50_s",
        "add node cold: p50 <= 1.5 x the floor of the same run",
        lambda r: (
            _finite(r["add_node_cold_p50_s"], r["add_node_floor_p50_s"])
            and r["add_node_cold_p50_s"] <= 1.5 * r["add_node_floor_p50_s"]
        ),
    ),
    Target(
        "burst20_ready_s",
        "burst of 20: all ready <= 20 s, 0 errors",
        lambda r: (
            _finite(r["burst20_ready_s"])
            and r["burst20_ready_s"] <= 20
            and r["burst20_errors"] == 0
        ),
    ),
    Target(
        "term_throughput_ratio",
        "terminal throughput >= 0.7 x direct attach",
        lambda r: _finite(r["term_throughput_ratio"]) and r["term_throughput_ratio"] >= 0.7,
    ),
    Target(
        "echo_overhead_p50_ms",
        "echo overhead p50 <= 2 ms over direct attach",
        lambda r: _finite(r["echo_overhead_p50_ms"]) and r["echo_overhead_p50_ms"] <= 2,
    ),
    Target(
        "echo_p95_200_terms_ms",
        "200 terminals typing: echo p95 <= 50 ms",
        lambda r: _finite(r["echo_p95_200_terms_ms"]) and r["echo_p95_200_terms_ms"] <= 50,
    ),
    Target(
        "idle_node_mib",
        "idle node <= 64 MiB",
        lambda r: _finite(r["idle_node_mib"]) and r["idle_node_mib"] <= 64,
    ),
]


def verdicts(results: dict[str, Any]) -> dict[str, bool]:
    return {target.key: target.met(results) for target in TARGETS}


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=True, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    return str(value)


def _f(value: Any, digits: int = 3) -> str:
    if isinstance(value, int | float) and math.isfinite(value):
        return f"{value:.{digits}f}"
    return "n/a"


def write_markdown(path: Path, results: dict[str, Any], details: dict[str, Any]) -> None:
    r, d, m = results, details, results["machine"]
    met = verdicts(results)
    ok = {True: "met", False: "**missed**"}
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`bench/run.py`); the raw numbers are in",
        "`bench/results/latest.json`. Every number below comes from one run on one machine,",
        "the floors measured side by side with the app in that same run.",
        "",
        f"Run: {r['started_at']} ({'quick' if r['quick'] else 'full'} configuration,"
        f" {r['duration_s']:.0f} s).",
        "",
        "## Machine",
        "",
        f"- {m['cpus']} x {m['cpu']}, {m['memory_gib']} GiB RAM, Linux {m['kernel']}",
        f"- Docker Engine {m['docker_engine']} (API {m['docker_api']}), swarm active; node"
        f" profile `{m['node_profile']}`",
        f"- Python {m['python']}, Django {m['django']}, Channels {m['channels']},"
        f" daphne {m['daphne']} (one process), websockets {m['websockets']} (client)",
        f"- Load average at start: {', '.join(str(x) for x in m['loadavg_at_start'])}."
        + (
            " **The machine was busy with other work when the run started**; timings are"
            " noisy: re-run on a quiet machine."
            if m["loadavg_at_start"][0] > m["cpus"]
            else " Nothing else ran on the machine during the run."
        ),
        "",
        "## Targets",
        "",
        "| Target | Result | |",
        "|---|---|---|",
        f"| {TARGETS[0].text} | p50 {_f(r['add_node_pool_p50_s'])} s"
        f" (node1 of a fresh session; node2: {_f(r['add_node_pool_next_p50_s'])} s)"
        f" | {ok[met['add_node_pool_p50_s']]} |",
        f"| {TARGETS[1].text} | cold p50 {_f(r['add_node_cold_p50_s'])} s, floor"
        f" {_f(r['add_node_floor_p50_s'])} s: {_f(r['add_node_cold_ratio'], 2)} x"
        f" | {ok[met['add_node_cold_p50_s']]} |",
        f"| {TARGETS[2].text} | {r['burst_clients']} at once: all ready in"
        f" {_f(r['burst20_ready_s'], 1)} s, {r['burst20_errors']} errors"
        f" | {ok[met['burst20_ready_s']]} |",
        f"| {TARGETS[3].text} | {_f(r['term_throughput_mib_s'], 1)} MiB/s vs"
        f" {_f(r['term_direct_throughput_mib_s'], 1)} MiB/s direct:"
        f" {_f(r['term_throughput_ratio'], 2)} x | {ok[met['term_throughput_ratio']]} |",
        f"| {TARGETS[4].text} | p50 {_f(r['echo_p50_ms'], 2)} ms vs"
        f" {_f(r['echo_direct_p50_ms'], 2)} ms direct: +{_f(r['echo_overhead_p50_ms'], 2)} ms"
        f" | {ok[met['echo_overhead_p50_ms']]} |",
        f"| {TARGETS[5].text} | {r['many_terminals']} terminals: p95"
        f" {_f(r['echo_p95_200_terms_ms'], 1)} ms | {ok[met['echo_p95_200_terms_ms']]} |",
        f"| {TARGETS[6].text} | median {_f(r['idle_node_mib'], 1)} MiB"
        f" (max {_f(r['idle_node_max_mib'], 1)}) | {ok[met['idle_node_mib']]} |",
        "",
        "## All numbers",
        "",
        "| Measurement | n | p50 | p95 | min | max |",
        "|---|---|---|---|---|---|",
    ]
    for label, stats, unit, scale in d["tables"]:
        lines.append(
            f"| {label} | {stats['n']} | {_f(stats['p50'] * scale, 3)} {unit}"
            f" | {_f(stats['p95'] * scale, 3)} {unit} | {_f(stats['min'] * scale, 3)} {unit}"
            f" | {_f(stats['max'] * scale, 3)} {unit} |"
        )
    lines += [
        "",
        f"- Terminal throughput: {r['term_mib']} MiB of output"
        f" (`head -c {r['term_mib'] * 3 // 4}M /dev/urandom | base64`) through the"
        f" websocket took {_f(r['term_ws_s'], 2)} s, through a direct attach"
        f" {_f(r['term_direct_s'], 2)} s (bytes counted as received, TTY line endings"
        " included).",
        f"- Many terminals: {r['many_terminals']} websockets over {r['many_sessions']} sessions"
        f" ({r['many_opened']} opened, {r['many_errors']} errors) on one daphne process,"
        f" each typing one key a second for {r['many_seconds']:.0f} s: server CPU"
        f" {_f(r['server_cpu_percent_200_terms'], 1)} % of one core; server resident memory"
        f" {_f(r['server_rss_before_mib'], 1)} MiB before the terminals opened,"
        f" {_f(r['server_rss_after_mib'], 1)} MiB with them open:"
        f" {_f(r['server_rss_per_terminal_kib'], 1)} KiB per terminal.",
        f"- The burst again with a pool as big as the class (`PWD_POOL_SIZE="
        f"{r['burst_clients']}`, full before the burst): all ready in"
        f" {_f(r['burst20_big_pool_ready_s'], 1)} s, {r['burst20_big_pool_errors']} errors.",
        f"- The first add after a server starts is timed apart (it runs the node"
        f" security profile probe once per process): cold"
        f" {_f(r['add_node_cold_first_after_start_s'])} s, pool"
        f" {_f(r['add_node_pool_first_after_start_s'])} s.",
        f"- Overlay attach (engine only, part of every pool take): first container on a"
        f" fresh session network p50 {_f(r['overlay_connect_first_p50_s'])} s, a second"
        f" one {_f(r['overlay_connect_next_p50_s'])} s.",
        f"- Idle node memory: cgroup usage minus inactive page cache (as `docker stats`),"
        f" {r['idle_node_samples']} nodes that had been up and idle for a while.",
        "",
        "## How it is measured",
        "",
        "`make bench` (or `.venv/bin/python bench/run.py`; `--quick` for a small, fast run,"
        " `--out DIR` to write elsewhere, `--only pool-add|burst` for one phase, printed"
        " only, `--no-prepare` to measure the pool without attach-ahead) starts its own"
        " daphne on a free port of 127.0.0.1"
        " with a temporary SQLite database and its own `PWD_INSTANCE`, plus a pool keeper"
        " (`manage.py pool`) where the pool is measured, and removes everything it created"
        " at the end.",
        "",
        "1. **Add node**: `POST /api/sessions/<id>/nodes/` until the 201 (the API answers"
        " once the node's inner Docker answers). Cold: a server with `PWD_POOL_SIZE=0`."
        " Pool: `PWD_POOL_SIZE=2` with the keeper; the pool is full, and the session's next"
        " node attached ahead (`PWD_POOL_PREPARE`), before each add. Each"
        " trial times node1 of a fresh session, then node2. **Floor**: `docker run -dit"
        " --init` of the node image with the detected security profile and the node's"
        " resource limits, on the default bridge, then provisioning's"
        " `wait_for_inner_docker` (the same single exec the app uses).",
        f"2. **Burst**: {r['burst_clients']} threads released by one barrier, each creating a"
        " session and adding a node (pool of 2 with its keeper); time until the last 201.",
        "3. **Throughput**: the same node, first through a direct attach to its TTY on the"
        " engine's socket (`sessions_app.engine.tty.attach_tty`, what the bridge"
        " itself uses), then through the terminal websocket; bytes until an end marker.",
        "4. **Echo**: one key (`x`, then DEL) and the time until its echo arrives, alternately,"
        " 20 ms apart; direct attach and websocket on the same node.",
        "5. **Many terminals**: as in 4, one key a second per terminal, random phase.",
        "6. **Footprint**: `engine.memory_usage` (the stats API); daphne's VmRSS.",
        "",
    ]
    if NOTES.exists():
        lines += [NOTES.read_text().rstrip(), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
