"""The asynchronous half of the Docker boundary: a node's TTY for the terminal path.

:mod:`sessions_app.engine` is blocking (docker-py). The terminal path must never
block the event loop, so this module speaks the engine's HTTP API itself over
``asyncio`` streams: attaching to a container is a plain HTTP upgrade, after which the
connection is a raw byte stream (no frame headers, because nodes run with a TTY).
Nothing outside ``sessions_app`` opens the engine's socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from sessions_app.engine import EngineError, EngineUnavailable, NodeGone

DEFAULT_SOCKET = "/var/run/docker.sock"
# A request/response call that takes longer than this means the engine is in trouble.
REQUEST_TIMEOUT = 15.0


@dataclass(frozen=True)
class EngineAddress:
    unix_path: str | None = None
    host: str | None = None
    port: int | None = None


def engine_address() -> EngineAddress:
    """Where the engine listens: ``DOCKER_HOST`` (unix:// or plain tcp://) or the default.

    TLS (DOCKER_TLS_VERIFY) is not supported on this path: run pwd next to the engine.
    """
    raw = os.environ.get("DOCKER_HOST", "").strip()
    if not raw:
        return EngineAddress(unix_path=DEFAULT_SOCKET)
    parts = urlsplit(raw)
    if parts.scheme == "unix":
        return EngineAddress(unix_path=parts.path or DEFAULT_SOCKET)
    if parts.scheme in {"tcp", "http"}:
        if os.environ.get("DOCKER_TLS_VERIFY"):
            raise EngineUnavailable("terminals need a unix socket or plain tcp DOCKER_HOST")
        return EngineAddress(host=parts.hostname, port=parts.port or 2375)
    raise EngineUnavailable(f"unsupported DOCKER_HOST for terminals: {raw}")


async def _connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    address = engine_address()
    try:
        if address.unix_path:
            # A generous limit: after an attach the reader carries whole output bursts.
            return await asyncio.open_unix_connection(address.unix_path, limit=1 << 20)
        return await asyncio.open_connection(address.host, address.port, limit=1 << 20)
    except OSError as exc:
        raise EngineUnavailable(f"the Docker engine does not answer: {exc}") from exc


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise EngineUnavailable("the engine closed the connection") from exc
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError) as exc:
        raise EngineUnavailable(f"unexpected answer from the engine: {lines[0]!r}") from exc
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    return status, headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readline()
                return bytes(body)
            body += await reader.readexactly(size)
            await reader.readline()
    return await reader.read()


def _error_message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message", "")) or body.decode("utf-8", "replace")
    except (ValueError, AttributeError):
        return body.decode("utf-8", "replace").strip()


def _request_bytes(method: str, path: str, extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\n{extra}\r\n"
    return head.encode("latin-1")


async def _request(method: str, path: str) -> tuple[int, bytes]:
    reader, writer = await _connect()
    try:
        writer.write(_request_bytes(method, path, "Connection: close\r\n"))
        await writer.drain()
        status, headers = await _read_head(reader)
        return status, await _read_body(reader, headers)
    finally:
        writer.close()


async def _call(method: str, path: str) -> tuple[int, bytes]:
    try:
        return await asyncio.wait_for(_request(method, path), REQUEST_TIMEOUT)
    except TimeoutError as exc:
        raise EngineUnavailable(f"the engine did not answer {method} {path} in time") from exc


class TTYStream:
    """One attach connection to a node's TTY: read its output, write keystrokes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, limit: int = 65536) -> bytes:
        """Up to ``limit`` bytes of output; ``b""`` once the stream has ended."""
        try:
            return await self._reader.read(limit)
        except (ConnectionError, OSError):
            return b""

    async def write(self, data: bytes) -> None:
        """Send input to the TTY (waits while the engine's socket buffer is full)."""
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        """Close the attach connection. The shell keeps running (stdin is not "once")."""
        self._writer.close()
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            await asyncio.wait_for(self._writer.wait_closed(), 2)


async def attach_tty(container_id: str, *, logs: bool) -> TTYStream:
    """Attach to a container's TTY (stdin, stdout, stderr).

    With ``logs`` the engine first replays what its json-file log still holds of the
    TTY's output (capped at 1 MiB per node), then streams live output.

    Raises NodeGone when the engine does not know the container, EngineError
    when it refuses, EngineUnavailable when it does not answer.
    """
    query = "stream=1&stdin=1&stdout=1&stderr=1" + ("&logs=1" if logs else "")
    path = f"/containers/{quote(container_id, safe='')}/attach?{query}"
    upgrade = "Connection: Upgrade\r\nUpgrade: tcp\r\n"
    reader, writer, _ = await open_stream(
        "POST", path, upgrade, ok=(101, 200), what="attach to the node"
    )
    return TTYStream(reader, writer)


async def open_stream(
    method: str,
    path: str,
    extra: str = "",
    *,
    ok: tuple[int, ...] = (200,),
    what: str = "reach the node",
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, dict[str, str]]:
    """Send a request whose answer is a stream (an attach, a stats stream); returns the
    connection and the answer's headers once the engine answers one of ``ok``.

    Raises NodeGone on 404, EngineError (``could not <what>``) on another answer,
    EngineUnavailable when the engine does not answer.
    """
    reader, writer = await _connect()
    try:
        writer.write(_request_bytes(method, path, extra))
        await writer.drain()
        status, headers = await asyncio.wait_for(_read_head(reader), REQUEST_TIMEOUT)
        if status in ok:
            return reader, writer, headers
        body = await asyncio.wait_for(_read_body(reader, headers), REQUEST_TIMEOUT)
    except BaseException:
        writer.close()
        raise
    writer.close()
    if status == 404:
        raise NodeGone(_error_message(body))
    raise EngineError(f"could not {what}: {_error_message(body)}")


async def resize_tty(container_id: str, cols: int, rows: int) -> None:
    """Set the TTY size of a container. Raises NodeGone when it is gone."""
    path = f"/containers/{quote(container_id, safe='')}/resize?h={int(rows)}&w={int(cols)}"
    status, body = await _call("POST", path)
    if status == 404:
        raise NodeGone(_error_message(body))
    if status >= 400:
        raise EngineError(f"could not resize the terminal: {_error_message(body)}")


async def container_running(container_id: str) -> bool:
    """Whether the engine knows the container and it is running."""
    status, body = await _call("GET", f"/containers/{quote(container_id, safe='')}/json")
    if status == 404:
        return False
    if status >= 400:
        raise EngineError(_error_message(body))
    return bool(json.loads(body).get("State", {}).get("Running"))
