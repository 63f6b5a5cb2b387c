"""A node's open ports, read inside the node, and its address for the port proxy.

Discovery runs in the node, not from here: a small Python program (:data:`PORTS_PROGRAM`)
lists the TCP ports listening on a non-loopback address (/proc/net/tcp and tcp6: a
``python3 -m http.server`` and the inner engine's docker-proxy alike) and the ports the
inner engine publishes (``docker ps``). Watching, it reads the sockets twice a second,
which costs the node next to nothing and the app nothing, and wakes at once on the inner
engine's container events; it prints a line only when the set changes. The exec speaks
the engine's API over asyncio streams (as :mod:`.tty` does), so a watch holds no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections.abc import AsyncIterator
from urllib.parse import quote

from sessions_app.engine import IN_NODE_ROOT, EngineError, NodeGone
from sessions_app.engine.networks import gateway_endpoints
from sessions_app.engine.tty import (
    REQUEST_TIMEOUT,
    _connect,
    _error_message,
    _read_body,
    _read_head,
)

# At most this many ports are reported for a node; the node is the trainee's, so what it
# prints is checked as untrusted input.
MAX_PORTS = 64
MAX_LINE = 4096

PORTS_PROGRAM = r"""
import json, os, re, select, subprocess, sys, time

def loopback(addr):
    if len(addr) == 8:
        return addr[6:8] == "7F"
    return addr == "0" * 24 + "01000000" or (
        addr.startswith("0000000000000000FFFF0000") and addr[30:32] == "7F")

def sockets():
    found = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as table:
                rows = table.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 3 and fields[3] == "0A":
                addr, port = fields[1].rsplit(":", 1)
                if not loopback(addr):
                    found.add(int(port, 16))
    return found

def published():
    try:
        out = subprocess.run(["docker", "ps", "--format", "{{.Ports}}"], capture_output=True,
                             text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    return {int(p) for host, p in re.findall(r"([0-9a-f.:\[\]]*):(\d+)->\d+/tcp", out)
            if not host.startswith("127.")}

def events():
    try:
        return subprocess.Popen(["docker", "events", "--filter", "type=container",
                                 "--format", "{{.Status}}"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
    except OSError:
        return None

once = sys.argv[1:] == ["once"]
last, inner, watcher, retry = None, published(), None, 0.0
deadline = time.monotonic() + 3600
while time.monotonic() < deadline:
    ports = sorted(sockets() | inner)
    if ports != last:
        sys.stdout.write(json.dumps(ports) + "\n")
        sys.stdout.flush()
        last = ports
    if once:
        break
    if watcher is None or watcher.poll() is not None:
        if time.monotonic() > retry:
            watcher, retry = events(), time.monotonic() + 5
    waits = [sys.stdin] + ([watcher.stdout] if watcher and watcher.poll() is None else [])
    ready = select.select(waits, [], [], 0.5)[0]
    if sys.stdin in ready and not os.read(sys.stdin.fileno(), 4096):
        break
    if watcher and watcher.stdout in ready:
        if not os.read(watcher.stdout.fileno(), 4096):
            watcher = None
        time.sleep(0.2)
        inner = published()
if watcher:
    watcher.kill()
"""


def gateway_address(container_id: str) -> str:
    """The node's IPv4 on docker_gwbridge (the app reaches nodes there); "" when the
    engine lists none for it (gone, or not on a session network)."""
    for endpoint in gateway_endpoints():
        if endpoint.container_id == container_id:
            return endpoint.ipv4
    return ""


def parse_ports(line: bytes) -> list[int] | None:
    """A line the node printed as a sorted list of ports, or None when it is not one."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    ports = {p for p in value if type(p) is int and 0 < p < 65536}
    return sorted(ports)[:MAX_PORTS]


async def _post_json(path: str, body: dict, upgrade: bool = False):
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n"
        + ("Connection: Upgrade\r\nUpgrade: tcp\r\n" if upgrade else "Connection: close\r\n")
        + "\r\n"
    )
    reader, writer = await _connect()
    try:
        writer.write(head.encode("latin-1") + data)
        await writer.drain()
        status, headers = await asyncio.wait_for(_read_head(reader), REQUEST_TIMEOUT)
        if upgrade and status in (101, 200):
            return status, b"", reader, writer
        body_bytes = await asyncio.wait_for(_read_body(reader, headers), REQUEST_TIMEOUT)
    except BaseException:
        writer.close()
        raise
    writer.close()
    return status, body_bytes, None, None


async def _start_program(container_id: str, *args: str):
    argv = [*IN_NODE_ROOT, "python3", "-c", PORTS_PROGRAM, *args]
    status, body, _, _ = await _post_json(
        f"/containers/{quote(container_id, safe='')}/exec",
        {"AttachStdin": True, "AttachStdout": True, "AttachStderr": False, "Cmd": argv},
    )
    if status == 404:
        raise NodeGone(_error_message(body))
    if status >= 400:
        raise EngineError(f"could not read the node's ports: {_error_message(body)}")
    exec_id = json.loads(body)["Id"]
    status, body, reader, writer = await _post_json(
        f"/exec/{quote(exec_id, safe='')}/start", {"Detach": False, "Tty": False}, upgrade=True
    )
    if reader is None or writer is None:
        if status == 404:
            raise NodeGone(_error_message(body))
        raise EngineError(f"could not read the node's ports: {_error_message(body)}")
    return reader, writer


async def _stdout_lines(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The exec's stdout, line by line, out of the engine's multiplexed frames."""
    pending = b""
    while True:
        try:
            header = await reader.readexactly(8)
            stream, size = header[0], struct.unpack(">I", header[4:])[0]
            payload = await reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return
        if stream != 1:
            continue
        pending += payload
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line
        if len(pending) > MAX_LINE:
            return


async def _close(writer: asyncio.StreamWriter) -> None:
    # Closing the connection closes the program's stdin: it ends itself in the node.
    writer.close()
    with contextlib.suppress(TimeoutError, ConnectionError, OSError):
        await asyncio.wait_for(writer.wait_closed(), 2)


async def read_ports(container_id: str) -> list[int]:
    """The node's open ports now. Raises NodeGone, EngineError or EngineUnavailable."""
    reader, writer = await _start_program(container_id, "once")
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            async for line in _stdout_lines(reader):
                ports = parse_ports(line)
                if ports is not None:
                    return ports
    except TimeoutError as exc:
        raise EngineError("the node did not list its ports in time") from exc
    finally:
        await _close(writer)
    raise EngineError("the node did not list its ports")


async def watch_ports(container_id: str) -> AsyncIterator[list[int]]:
    """The node's open ports, first as they are, then each time they change. Ends when
    the program in the node ends (after an hour, or the node went away)."""
    reader, writer = await _start_program(container_id)
    try:
        async for line in _stdout_lines(reader):
            ports = parse_ports(line)
            if ports is not None:
                yield ports
    finally:
        await _close(writer)
