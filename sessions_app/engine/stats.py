"""A node's CPU and memory as the engine streams them (``GET /containers/<id>/stats``).

Asynchronous, like :mod:`.tty`: the engine's HTTP API over ``asyncio`` streams, so a
reader per node costs one socket and no thread. The engine sends a sample about once a
second for as long as the connection stays open; closing it stops the engine's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sessions_app.engine import EngineUnavailable
from sessions_app.engine.tty import open_stream

# The engine writes a sample every second; a silence this long means it is in trouble.
SAMPLE_TIMEOUT = 30.0

_open_streams = 0


def open_streams() -> int:
    """How many stats connections this process holds open to the engine right now."""
    return _open_streams


def memory_bytes(memory_stats: dict[str, Any]) -> int:
    """Memory in use as ``docker stats`` counts it: page cache that can be dropped at once
    (inactive files) is left out. ``memory_stats`` is the engine's object of that name."""
    detail = memory_stats.get("stats") or {}
    # cgroup v2 reports inactive_file, v1 total_inactive_file.
    cache = detail.get("inactive_file", detail.get("total_inactive_file", 0))
    return max(0, int(memory_stats.get("usage", 0)) - int(cache))


@dataclass(frozen=True)
class Sample:
    """One reading: CPU time counters (nanoseconds) and memory (bytes)."""

    cpu_total: int
    system_total: int
    online_cpus: int
    memory_bytes: int
    memory_limit_bytes: int

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Sample:
        cpu = raw.get("cpu_stats") or {}
        usage = cpu.get("cpu_usage") or {}
        memory = raw.get("memory_stats") or {}
        online = cpu.get("online_cpus") or len(usage.get("percpu_usage") or ()) or 1
        return cls(
            cpu_total=int(usage.get("total_usage", 0)),
            system_total=int(cpu.get("system_cpu_usage", 0)),
            online_cpus=int(online),
            memory_bytes=memory_bytes(memory),
            memory_limit_bytes=int(memory.get("limit", 0)),
        )


def cpu_percent(before: Sample, after: Sample) -> float:
    """CPU use between two samples as ``docker stats`` shows it: the container's share of
    the host's CPU time times the host's CPUs, so 100 is one whole CPU busy."""
    cpu = after.cpu_total - before.cpu_total
    system = after.system_total - before.system_total
    if cpu <= 0 or system <= 0:
        return 0.0
    return cpu / system * after.online_cpus * 100.0


class StatsStream:
    """One open stats connection; :meth:`next` gives its samples one by one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._buffer = b""
        self._ended = False
        self._closed = False

    async def next(self) -> Sample | None:
        """The next sample, or None once the engine has ended the stream (the container
        stopped or went away). Raises EngineUnavailable when the engine falls silent."""
        while b"\n" not in self._buffer:
            if self._ended:
                return None
            chunk = await asyncio.wait_for(self._chunk(), SAMPLE_TIMEOUT)
            if not chunk:
                self._ended = True
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        raw = json.loads(line) if line.strip() else {}
        # The engine sends an empty sample (no CPU counters) when it could not read the
        # container's cgroup this second; it says nothing, so it is skipped.
        if not (raw.get("cpu_stats") or {}).get("system_cpu_usage"):
            return await self.next()
        return Sample.parse(raw)

    async def _chunk(self) -> bytes:
        """The next chunk of the chunked body; ``b""`` at its end."""
        try:
            size_line = await self._reader.readline()
            if not size_line:
                return b""
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                return b""
            data = await self._reader.readexactly(size)
            await self._reader.readline()
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError):
            return b""
        return data

    async def close(self) -> None:
        """Close the connection, which ends the engine's sampling for it."""
        global _open_streams
        if self._closed:
            return
        self._closed = True
        _open_streams -= 1
        self._writer.close()
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            await asyncio.wait_for(self._writer.wait_closed(), 2)


async def open_stats(container_id: str) -> StatsStream:
    """Start streaming a container's stats.

    Raises NodeGone when the engine does not know the container, EngineError when it
    refuses, EngineUnavailable when it does not answer.
    """
    global _open_streams
    path = f"/containers/{quote(container_id, safe='')}/stats?stream=true"
    reader, writer, headers = await open_stream("GET", path, what="read the node's stats")
    if headers.get("transfer-encoding", "").lower() != "chunked":
        writer.close()
        raise EngineUnavailable("the engine's stats stream is not chunked")
    _open_streams += 1
    return StatsStream(reader, writer)
