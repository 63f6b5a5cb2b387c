"""One websocket's view of a hub: a bounded queue, its flow control, and its input."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from terminals.hub import Hub

FRAME_SIZE = 64 * 1024
# A client whose queue grows past this is resynchronised with a snapshot instead.
CLIENT_QUEUE_MAX = 1024 * 1024
# Bytes in flight to a client that acknowledges what it has processed: what it draws in
# WINDOW_SECONDS, by the rate its acks show, within these bounds. A browser then keeps
# drawing while its acks cross a busy server (a fixed 256 KiB left xterm.js idle a
# third of the time, docs/benchmarks.md), and Ctrl-C still shows within a second.
CLIENT_WINDOW_MIN = 256 * 1024
CLIENT_WINDOW_MAX = 1024 * 1024
WINDOW_SECONDS = 0.25
RESYNC_MIN_INTERVAL = 0.25
# Clients that acknowledge pace the hub: it stops reading (and the engine holds the
# program back) while one of them has this much queued. One that holds back another
# client for SLOW_CLIENT_SECONDS is resynchronised, so it cannot slow the others down;
# when all of them are that slow, the program waits for them up to ALONE_SLOW_SECONDS
# (dropping output then would only skip what they are about to draw).
CLIENT_HIGH_WATER = 256 * 1024
SLOW_CLIENT_SECONDS = 0.5
ALONE_SLOW_SECONDS = 5.0

Sender = Callable[[bytes], Awaitable[None]]
JsonSender = Callable[[dict[str, Any]], Awaitable[None]]


class Client:
    """One websocket on a hub: what it is owed, and what it types."""

    def __init__(self, hub: Hub, send_bytes: Sender, send_json: JsonSender) -> None:
        self.hub = hub
        self._send_bytes = send_bytes
        self._send_json = send_json
        self.buffer = bytearray()
        self.wake = asyncio.Event()
        self.resync = False
        self.resyncs = 0
        self._last_resync = 0.0
        self.size: tuple[int, int] | None = None
        self.last_active = 0.0
        self.sent = 0
        # None until the client sends its first ack: clients that never ack are paced
        # by the hub's read rate only.
        self.acked: int | None = None
        # Dropped for being too slow; the hub does not wait for it until its next ack.
        self.stalled = False
        self.window = CLIENT_WINDOW_MIN
        self.rate = 0.0  # bytes a second it processes while it has output in flight
        self._acked_at = 0.0
        self._busy = False
        self.task: asyncio.Task[None] | None = None

    # --- what the client does --------------------------------------------------------

    async def input(self, data: bytes) -> None:
        """Type into the TTY; this client becomes the driver and its size applies."""
        await self.hub.type_from(self, data)

    async def resize(self, cols: int, rows: int) -> None:
        """Record this client's size; the TTY follows the driver (docs/protocol.md)."""
        await self.hub.size_from(self, cols, rows)

    def ack(self, total: int) -> None:
        """The client has processed ``total`` bytes of output since it connected."""
        now = time.monotonic()
        acked = min(total, self.sent)
        # Measured only over stretches when it had output to process, not while idle.
        if self._busy and self.acked is not None and now > self._acked_at:
            sample = (acked - self.acked) / (now - self._acked_at)
            self.rate = sample if not self.rate else 0.7 * self.rate + 0.3 * sample
            self.window = int(
                min(max(self.rate * WINDOW_SECONDS, CLIENT_WINDOW_MIN), CLIENT_WINDOW_MAX)
            )
        self.acked = acked
        self._acked_at = now
        self._busy = self.sent > acked
        self.stalled = False
        self.wake.set()

    def leave(self) -> None:
        self.hub.leave(self)

    # --- what the hub does to it -----------------------------------------------------

    def push(self, data: bytes) -> None:
        if self.resync:
            return
        if len(self.buffer) + len(data) > CLIENT_QUEUE_MAX:
            self.buffer.clear()
            self.resync = True
        else:
            self.buffer += data
        self.wake.set()

    @property
    def backed_up(self) -> bool:
        """An acknowledging client with a full queue: the hub waits for it."""
        return self.acked is not None and not self.stalled and len(self.buffer) >= CLIENT_HIGH_WATER

    def fall_behind(self) -> None:
        """Drop the queue; the client gets a fresh snapshot instead, and the hub stops
        waiting for it until it acknowledges again."""
        self.buffer.clear()
        self.resync = True
        self.stalled = True
        self.wake.set()

    async def pump(self) -> None:
        """Send the queue in frames of up to FRAME_SIZE, resynchronising when told."""
        cols, rows = self.hub.size
        await self._send_json({"type": "status", "state": "connected", "cols": cols, "rows": rows})
        while True:
            if self.resync:
                wait = self._last_resync + RESYNC_MIN_INTERVAL - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._last_resync = time.monotonic()
                self.buffer[:] = self.hub.snapshot()
                self.resync = False
                self.resyncs += 1
                await self._send_json({"type": "status", "state": "resync"})
            blocked = self.acked is not None and self.sent - self.acked >= self.window
            if not self.buffer or blocked:
                self.wake.clear()
                await self.wake.wait()
                continue
            chunk = bytes(self.buffer[:FRAME_SIZE])
            del self.buffer[:FRAME_SIZE]
            await self._send_bytes(chunk)
            self.sent += len(chunk)
            if len(self.buffer) < CLIENT_HIGH_WATER:
                self.hub.space.set()
