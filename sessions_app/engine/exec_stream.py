"""One command in a node with its stdin and stdout on the exec's hijacked connection.

Like :mod:`.tty`, this speaks the engine's HTTP API over ``asyncio`` streams, so a
stream holds no thread. Without a TTY the stream is multiplexed: 8-byte frame headers
(stream, 0, 0, 0, big-endian length) before each piece of stdout or stderr; stderr is
kept, bounded, for the error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from urllib.parse import quote

from sessions_app.engine import IN_NODE_ROOT, EngineError, NodeGone
from sessions_app.engine.tty import (
    REQUEST_TIMEOUT,
    _connect,
    _error_message,
    _read_body,
    _read_head,
)

STDOUT, STDERR = 1, 2
# What a command may say on stderr, and the largest header :meth:`read_until_nul` takes.
MESSAGE_MAX = 4096
HEADER_MAX = 8192


class StdinClosed(EngineError):
    """The command stopped reading its input (it ended, or failed)."""


async def _json_request(method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
    payload = json.dumps(body).encode() if body is not None else b""
    reader, writer = await _connect()
    try:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + payload)
        await writer.drain()
        status, headers = await _read_head(reader)
        return status, await _read_body(reader, headers)
    finally:
        writer.close()


async def _call(method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
    try:
        return await asyncio.wait_for(_json_request(method, path, body), REQUEST_TIMEOUT)
    except TimeoutError as exc:
        raise EngineError(f"the engine did not answer {method} {path} in time") from exc


class ExecStream:
    """A command running in a node: write its stdin, read its stdout frame by frame."""

    def __init__(
        self, exec_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.exec_id = exec_id
        self._reader = reader
        self._writer = writer
        self._stderr = bytearray()
        self._pending = b""

    @property
    def message(self) -> str:
        """What the command said on stderr (its first MESSAGE_MAX bytes)."""
        return self._stderr.decode("utf-8", "replace").strip()

    async def read(self) -> bytes:
        """The next piece of stdout; ``b""`` once the command's output has ended.
        Stderr is kept (bounded) for :attr:`message`."""
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        while True:
            try:
                header = await self._reader.readexactly(8)
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                return b""
            stream, size = header[0], struct.unpack(">I", header[4:])[0]
            try:
                data = await self._reader.readexactly(size)
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                return b""
            if stream == STDOUT and data:
                return data
            if stream == STDERR:
                self._stderr += data[: max(0, MESSAGE_MAX - len(self._stderr))]

    def unread(self, data: bytes) -> None:
        """Put ``data`` back in front of the stdout still to read."""
        self._pending = data + self._pending

    async def read_until_nul(self) -> bytes | None:
        """Stdout up to its first NUL (which is dropped); None when it ends before one
        or the header passes HEADER_MAX."""
        header = b""
        while b"\0" not in header:
            data = await self.read()
            if not data or len(header) > HEADER_MAX:
                return None
            header += data
        head, rest = header.split(b"\0", 1)
        self.unread(rest)
        return head

    async def read_all(self, limit: int) -> bytes:
        out = bytearray()
        while data := await self.read():
            out += data[: max(0, limit - len(out))]
        return bytes(out)

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the command's stdin; StdinClosed when it stopped reading."""
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise StdinClosed(self.message or "the command stopped reading its input") from exc

    async def close_stdin(self) -> None:
        """End the command's input (a half-close: its output still comes)."""
        with contextlib.suppress(ConnectionError, OSError):
            self._writer.write_eof()

    async def exit_code(self) -> int | None:
        """The command's exit code, once its output has been read to the end."""
        for _ in range(50):
            status, body = await _call("GET", f"/exec/{self.exec_id}/json")
            if status == 404:
                raise NodeGone()
            if status >= 400:
                raise EngineError(_error_message(body))
            state = json.loads(body)
            if not state.get("Running"):
                return state.get("ExitCode")
            await asyncio.sleep(0.02)
        return None

    async def close(self) -> None:
        """Drop the connection; a command still writing gets SIGPIPE and ends."""
        self._writer.close()
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            await asyncio.wait_for(self._writer.wait_closed(), 2)


async def open_exec(container_id: str, argv: list[str], *, stdin: bool = False) -> ExecStream:
    """Start ``argv`` in the node's root, attached (stdin only when asked).

    Raises NodeGone when the engine does not know the container (or it does not run),
    EngineError when it refuses, EngineUnavailable when it does not answer.
    """
    status, body = await _call(
        "POST",
        f"/containers/{quote(container_id, safe='')}/exec",
        {
            "AttachStdin": stdin,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": False,
            "Cmd": [*IN_NODE_ROOT, *argv],
        },
    )
    if status in (404, 409):
        raise NodeGone(_error_message(body) or "the node is gone")
    if status >= 400:
        raise EngineError(f"could not run a command in the node: {_error_message(body)}")
    exec_id = json.loads(body)["Id"]
    payload = b'{"Detach": false, "Tty": false}'
    reader, writer = await _connect()
    try:
        head = (
            f"POST /exec/{exec_id}/start HTTP/1.1\r\nHost: docker\r\n"
            "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + payload)
        await writer.drain()
        status, headers = await asyncio.wait_for(_read_head(reader), REQUEST_TIMEOUT)
        if status in (101, 200):
            return ExecStream(exec_id, reader, writer)
        body = await asyncio.wait_for(_read_body(reader, headers), REQUEST_TIMEOUT)
    except BaseException:
        writer.close()
        raise
    writer.close()
    if status in (404, 409):
        raise NodeGone(_error_message(body) or "the node is gone")
    raise EngineError(f"could not run a command in the node: {_error_message(body)}")
