"""The measurements. Each returns plain numbers (seconds, bytes) for the report."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import statistics
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from bench.harness import Server, cpu_seconds, rss_bytes
from bench.terminal import (
    DirectTerminal,
    Terminal,
    WebsocketTerminal,
    discard,
    echo_latencies,
    keystroke,
    ready_shell,
    settle,
    throughput,
)
from sessions_app import engine

MIB = 1024 * 1024


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile, linearly interpolated (``fraction`` 0.5 is the median)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 0.5),
        "p95": percentile(values, 0.95),
        "min": min(values, default=float("nan")),
        "max": max(values, default=float("nan")),
    }


# --- 1. add node ------------------------------------------------------------------------


def floor_argv(name: str) -> list[str]:
    """A bare ``docker run`` of the node image, with the powers dockerd needs inside it
    (the detected profile) and the same resource limits as a node, labelled for clean-up.
    """
    argv = ["docker", "run", "-dit", "--init", "--name", name]
    argv += ["--label", f"{engine.LABEL_INSTANCE}={settings.PWD_INSTANCE}"]
    argv += ["--label", f"{engine.LABEL_ROLE}={engine.ROLE_PROBE}"]
    argv += engine.docker_run_args()
    argv.append(settings.PWD_NODE_IMAGE)
    return argv


def floor_once(index: int) -> float:
    """Seconds for ``docker run`` plus provisioning's wait for the inner engine."""
    name = f"{settings.PWD_INSTANCE}-floor-{index}-{random.randrange(10**6)}"
    started = time.perf_counter()
    done = subprocess.run(floor_argv(name), capture_output=True, text=True, check=True)
    container_id = done.stdout.strip()
    try:
        if engine.profile().name == "userns":
            engine.hand_over_cgroups(container_id)  # as create_node does
        engine.wait_for_inner_docker(container_id, settings.PWD_NODE_START_TIMEOUT)
        return time.perf_counter() - started
    finally:
        engine.remove_node(container_id)


@dataclass
class AddNodeResult:
    first: list[float] = field(default_factory=list)  # node1 of a fresh session
    next: list[float] = field(default_factory=list)  # node2 of the same session
    errors: list[str] = field(default_factory=list)
    # The server's very first add: it includes what a fresh process does once (the
    # node security profile probe), so it is reported apart, not in the percentiles.
    first_after_start: list[float] = field(default_factory=list)


def _timed_add(server: Server, session_id: str, result: AddNodeResult, into: list[float]) -> None:
    started = time.perf_counter()
    status, body = server.add_node(session_id)
    elapsed = time.perf_counter() - started
    if status == 201 and body.get("status") == "running":
        into.append(elapsed)
    else:
        result.errors.append(f"{status}: {body}")


def add_nodes(server: Server, trials: int, pause: float = 0.5) -> AddNodeResult:
    """``trials`` times: a fresh session, then node1 and node2 timed one after the other.

    With a pool the pool is full again, and the session's attach-ahead done, before each
    add (clicks are seconds apart in a class; the burst measures what happens when they
    are not).
    """
    result = AddNodeResult()
    session = server.create_session()
    if server.pool_size:
        server.wait_for_pool()
    _timed_add(server, session["id"], result, result.first_after_start)
    server.end_session(session["id"])
    for _ in range(trials):
        session = server.create_session()
        for into in (result.first, result.next):
            if server.pool_size:
                server.wait_for_pool()
                server.wait_for_preparation(session["id"])
            time.sleep(pause)  # let the engine and the keeper go quiet
            _timed_add(server, session["id"], result, into)
        server.end_session(session["id"])
    return result


def overlay_connect(trials: int) -> tuple[list[float], list[float]]:
    """The engine's own time to put a stopped-network container on an overlay network:
    first container of a fresh network, and a second one. Part of every pool take."""
    first: list[float] = []
    second: list[float] = []
    for trial in range(trials):
        session_id = f"benchnet{trial}{random.randrange(10**12)}"
        name, _ = engine.create_session_network(session_id)
        handles = [
            engine.create_node(None, f"pool-c{i}", None, role=engine.ROLE_POOL) for i in range(2)
        ]
        try:
            for handle, into in zip(handles, (first, second), strict=True):
                started = time.perf_counter()
                engine.connect_node(handle.container_id, name, "x")
                into.append(time.perf_counter() - started)
        finally:
            for handle in handles:
                engine.remove_node(handle.container_id)
            with contextlib.suppress(engine.EngineError):
                engine.remove_session_objects(session_id)
    return first, second


# --- 2. burst ---------------------------------------------------------------------------


@dataclass
class BurstResult:
    ready_s: float
    per_client_s: list[float]
    errors: list[str]
    sessions: list[str]


def burst(server: Server, clients: int) -> BurstResult:
    """``clients`` trainees press "Start" at the same moment: a session and a node each."""
    barrier = threading.Barrier(clients + 1)
    errors: list[str] = []
    sessions: list[str] = []
    lock = threading.Lock()

    def trainee() -> float | None:
        barrier.wait()
        started = time.perf_counter()
        try:
            session = server.create_session()
            with lock:
                sessions.append(session["id"])
            status, body = server.add_node(session["id"])
        except Exception as exc:  # noqa: BLE001 - every failure is a counted error
            with lock:
                errors.append(repr(exc))
            return None
        if status != 201:
            with lock:
                errors.append(f"{status}: {body}")
            return None
        return time.perf_counter() - started

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(trainee) for _ in range(clients)]
        barrier.wait()
        started = time.perf_counter()
        times = [future.result() for future in futures]
        ready = time.perf_counter() - started
    return BurstResult(ready, [t for t in times if t is not None], errors, sessions)


# --- 3 and 4. one terminal --------------------------------------------------------------


@dataclass
class TerminalResult:
    direct_bytes: int
    direct_s: float
    ws_bytes: int
    ws_s: float
    direct_echo: list[float]
    ws_echo: list[float]


async def one_terminal(
    server: Server, node: dict[str, Any], container_id: str, mib: int, echoes: int
) -> TerminalResult:
    """Throughput and echo through a direct attach, then through the websocket.

    The direct side goes first: the engine copies a TTY's output to every attached
    reader in turn, so a websocket hub still attached would hold the direct reader back.
    """
    direct = await DirectTerminal.open(container_id)
    try:
        await ready_shell(direct)
        direct_bytes, direct_s = await throughput(direct, mib)
        direct_echo = await echo_latencies(direct, echoes)
    finally:
        await direct.close()
    ws = await WebsocketTerminal.open(server.terminal_url(node))
    try:
        await ready_shell(ws)
        ws_bytes, ws_s = await throughput(ws, mib)
        ws_echo = await echo_latencies(ws, echoes)
    finally:
        await ws.close()
    return TerminalResult(direct_bytes, direct_s, ws_bytes, ws_s, direct_echo, ws_echo)


# --- 5. many terminals ------------------------------------------------------------------


@dataclass
class ManyResult:
    terminals: int
    opened: int
    echo: list[float]
    errors: list[str]
    cpu_percent: float
    rss_before: int
    rss_after: int
    seconds: float


async def many_terminals(
    server: Server, nodes: list[dict[str, Any]], seconds: float, connect_parallel: int = 20
) -> ManyResult:
    """One websocket per node, each typing a key a second for ``seconds``."""
    assert server.daphne is not None
    pid = server.daphne.pid
    errors: list[str] = []
    rss_before = rss_bytes(pid)
    gate = asyncio.Semaphore(connect_parallel)

    async def open_one(node: dict[str, Any]) -> Terminal | None:
        async with gate:
            try:
                term = await WebsocketTerminal.open(server.terminal_url(node))
                await ready_shell(term)
                return term
            except Exception as exc:  # noqa: BLE001 - counted, the rest go on
                errors.append(f"open {node['name']}: {exc!r}")
                return None

    terms = [t for t in await asyncio.gather(*(open_one(n) for n in nodes)) if t is not None]
    await asyncio.sleep(2)  # hubs settle (log replay, emulator catching up)
    rss_after = rss_bytes(pid)
    echo: list[float] = []
    stop_at = time.monotonic() + seconds

    async def typist(term: Terminal) -> None:
        await asyncio.sleep(random.random())  # typists are not in step
        letter = True
        while time.monotonic() < stop_at:
            tick = time.monotonic()
            try:
                if letter:
                    echo.append(await keystroke(term, "x", b"x"))
                else:
                    echo.append(await keystroke(term, "\x7f", b"\x08"))
            except Exception as exc:  # noqa: BLE001
                errors.append(f"type: {exc!r}")
                return
            letter = not letter
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))

    cpu_start, wall_start = cpu_seconds(pid), time.monotonic()
    await asyncio.gather(*(typist(t) for t in terms))
    cpu = (cpu_seconds(pid) - cpu_start) / (time.monotonic() - wall_start) * 100
    for term in terms:
        with contextlib.suppress(Exception):
            await settle(term, 0.05, 0.2)
            await term.close()
    return ManyResult(len(nodes), len(terms), echo, errors, cpu, rss_before, rss_after, seconds)


# --- 5b. a flood next door -------------------------------------------------------------

# Output a node floods its terminal with: what docs/protocol.md names as the case.
FLOOD_COMMAND = "cat /dev/urandom | base64\r"


@dataclass
class FloodResult:
    floods: int
    quiet_echo: list[float]
    flood_echo: list[float]
    quiet_healthz: list[float]
    flood_healthz: list[float]
    flood_mib: float  # output the flooding clients received while echo was measured
    cpu_percent: float  # the server's, while flooded
    # The same node's echo through a direct attach while flooded: what the machine and
    # the engine leave, without the server.
    direct_flood_echo: list[float]


def _healthz(server: Server) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(server.base + "/healthz", timeout=30) as response:
        response.read()
    return time.perf_counter() - started


async def _echo_and_healthz(
    server: Server, term: Terminal, echoes: int
) -> tuple[list[float], list[float]]:
    """Echo round trips of ``term`` and, meanwhile, /healthz every 0.1 s."""
    loop = asyncio.get_running_loop()
    healthz: list[float] = []
    done = asyncio.Event()

    async def poll() -> None:
        while not done.is_set():
            healthz.append(await loop.run_in_executor(None, _healthz, server))
            await asyncio.sleep(0.1)

    poller = asyncio.create_task(poll())
    try:
        echo = await echo_latencies(term, echoes)
    finally:
        done.set()
        await poller
    return echo, healthz


async def _flood(urls: list[str], flooding: Any, stop: Any, received: Any) -> None:
    floods = [await WebsocketTerminal.open(url, acks=False) for url in urls]
    readers: list[asyncio.Task[None]] = []
    try:
        for term in floods:
            await ready_shell(term)
            await term.send(FLOOD_COMMAND)
        readers = [asyncio.create_task(discard(term)) for term in floods]
        await asyncio.sleep(2)  # the floods reach their steady rate
        flooding.set()
        loop = asyncio.get_running_loop()
        while not await loop.run_in_executor(None, stop.wait, 0.2):
            received.value = sum(term.received for term in floods)
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for term in floods:
            with contextlib.suppress(Exception):
                await term.send("\x03")
                await settle(term, 0.2, 5)
                await term.close()


def _flood_process(urls: list[str], flooding: Any, stop: Any, received: Any) -> None:
    asyncio.run(_flood(urls, flooding, stop, received))


async def flood_next_door(
    server: Server,
    flood_nodes: list[dict[str, Any]],
    echo_node: dict[str, Any],
    echo_container: str,
    echoes: int,
) -> FloodResult:
    """Echo and /healthz of one terminal, quiet and then while every node in
    ``flood_nodes`` floods its own terminal to a client that never acknowledges.

    The flooding clients run in a process of their own: reading megabytes a second in
    this one would slow the measuring loop, not the server.
    """
    assert server.daphne is not None
    pid = server.daphne.pid
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")
    flooding, stop, received = context.Event(), context.Event(), context.Value("q", 0)
    urls = [server.terminal_url(node) for node in flood_nodes]
    term = await WebsocketTerminal.open(server.terminal_url(echo_node))
    process = context.Process(target=_flood_process, args=(urls, flooding, stop, received))
    try:
        await ready_shell(term)
        quiet_echo, quiet_healthz = await _echo_and_healthz(server, term, echoes)
        process.start()
        if not await loop.run_in_executor(None, flooding.wait, 120):
            raise RuntimeError("the flooding terminals did not start")
        before = received.value
        cpu_start, wall_start = cpu_seconds(pid), time.monotonic()
        flood_echo, flood_healthz = await _echo_and_healthz(server, term, echoes)
        cpu = (cpu_seconds(pid) - cpu_start) / (time.monotonic() - wall_start) * 100
        flood_mib = (received.value - before) / MIB
        direct = await DirectTerminal.open(echo_container)
        try:
            await ready_shell(direct)
            direct_echo = await echo_latencies(direct, echoes)
        finally:
            await direct.close()
    finally:
        stop.set()
        if process.pid is not None:
            await loop.run_in_executor(None, process.join, 60)
            if process.is_alive():
                process.kill()
        with contextlib.suppress(Exception):
            await term.close()
    return FloodResult(
        len(urls),
        quiet_echo,
        flood_echo,
        quiet_healthz,
        flood_healthz,
        flood_mib,
        cpu,
        direct_echo,
    )


def start_nodes(
    server: Server, sessions: int, per_session: int, parallel: int = 8
) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """``sessions`` sessions of ``per_session`` nodes. Returns nodes, session ids, errors."""
    session_ids = [server.create_session()["id"] for _ in range(sessions)]
    errors: list[str] = []

    def add(session_id: str) -> dict[str, Any] | None:
        status, body = server.add_node(session_id)
        if status != 201:
            errors.append(f"{status}: {body}")
            return None
        return body

    with ThreadPoolExecutor(parallel) as pool:
        # Round by round, so every session has node1 before any has node2.
        nodes = [
            node
            for _ in range(per_session)
            for node in pool.map(add, session_ids)
            if node is not None
        ]
    return nodes, session_ids, errors


# --- 6. footprint -----------------------------------------------------------------------


def idle_node_memory(container_ids: list[str]) -> list[int]:
    """The cgroup memory use of each container, counted as ``docker stats`` counts it."""
    usages = []
    for container_id in container_ids:
        with contextlib.suppress(engine.EngineError):
            usages.append(engine.memory_usage(container_id))
    return usages


def node_container_ids(session_ids: list[str]) -> dict[tuple[str, str], str]:
    """(session id, node name) -> container id, from the database the server writes."""
    from sessions_app.models import Node

    return {
        (node.session_id, node.name): node.container_id
        for node in Node.objects.filter(session_id__in=session_ids)
    }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
