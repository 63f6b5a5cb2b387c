"""One hub per node per process: one attach stream to the node's TTY, fanned out.

The hub reads the TTY, appends the bytes to every client's bounded queue and keeps a
terminal emulator (:mod:`terminals.screen`) so that a client joining late, or one that
fell behind, gets the screen as it is now exactly once, then live output.

The emulator is slow (pyte parses a few hundred KB/s), so it never sits on the output
path: it trails behind on its own task, eating only complete lines (cut after a newline
or before an escape) in slices of a millisecond or two. The emulators of all hubs in the
process share one budget (EMULATOR_SHARE of the event loop's time), so floods in many
terminals cannot crowd out another terminal's echo. A snapshot is its rendered state
followed by the raw bytes it has not eaten yet, so snapshot + live bytes is always the
whole stream. Under a flood it skips ahead to the most recent output instead of
falling further behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from sessions_app.engine import EngineError, NodeGone, tty
from terminals.screen import Emulator

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
FRAME_SIZE = 64 * 1024
# A client whose queue grows past this is resynchronised with a snapshot instead.
CLIENT_QUEUE_MAX = 1024 * 1024
# Bytes in flight to a client that acknowledges what it has processed.
CLIENT_WINDOW = 256 * 1024
RESYNC_MIN_INTERVAL = 0.25
# While a client that never acknowledges is connected, the hub reads the TTY no faster
# than this: nothing else bounds what daphne buffers for such a client. Far more than
# anyone reads, and low enough that three such floods (the engine logging them, the
# server framing them) leave other terminals' echo alone (docs/benchmarks.md).
HUB_READ_RATE = 1024 * 1024
# Clients that acknowledge pace the hub instead: it stops reading (and the engine holds
# the program back) while one of them has this much queued, for at most SLOW_CLIENT
# seconds; a client that slow is resynchronised so it cannot hold the others back.
CLIENT_HIGH_WATER = 256 * 1024
SLOW_CLIENT_SECONDS = 0.5
# Unparsed output the emulator may trail by before it skips ahead to the newest bytes.
EMULATOR_BACKLOG = 64 * 1024
EMULATOR_KEEP = 16 * 1024
# One slice is one to two milliseconds of pyte (~300 bytes a millisecond here): the
# longest the loop waits on an emulator before it serves a keystroke again.
EMULATOR_SLICE = 512
# The share of the event loop's time that the emulators of every hub together may take.
EMULATOR_SHARE = 0.25
# A log replay longer than this is cut to its tail (the scrollback is bounded anyway).
REPLAY_KEEP = 128 * 1024
REPLAY_QUIET = 0.15
REPLAY_MAX_WAIT = 3.0
# How long a hub keeps its attach after the last client left (a reload comes back fast).
LINGER_SECONDS = 10.0
DEFAULT_SIZE = (80, 24)

Sender = Callable[[bytes], Awaitable[None]]
JsonSender = Callable[[dict[str, Any]], Awaitable[None]]


def _safe_cut(data: bytes | bytearray, limit: int) -> int:
    """A cut point in ``data[:limit]`` not inside a line, escape or UTF-8 character."""
    window = data[:limit]
    return max(window.rfind(b"\n") + 1, window.rfind(b"\x1b"), 0)


class EmulatorBudget:
    """The event loop time every hub's emulator shares: after a slice that took ``d``
    seconds, no emulator runs for ``d * (1 / share - 1)`` seconds."""

    def __init__(self, share: float) -> None:
        self.share = share
        self.free_at = 0.0

    async def turn(self) -> None:
        """Wait until an emulator may run a slice (at least one pass of the loop)."""
        await asyncio.sleep(0)
        # Checked again after each wait: another hub's slice may have run meanwhile.
        while (delay := self.free_at - time.monotonic()) > 0:  # noqa: ASYNC110 - a time, not an event
            await asyncio.sleep(delay)

    def spent(self, seconds: float) -> None:
        now = time.monotonic()
        self.free_at = max(self.free_at, now) + seconds * (1 / self.share - 1)


_budget = EmulatorBudget(EMULATOR_SHARE)


class Client:
    """One websocket's view of a hub: a bounded queue and the task that drains it."""

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
        self.task: asyncio.Task[None] | None = None

    def push(self, data: bytes) -> None:
        if self.resync:
            return
        if len(self.buffer) + len(data) > CLIENT_QUEUE_MAX:
            self.buffer.clear()
            self.resync = True
        else:
            self.buffer += data
        self.wake.set()

    def ack(self, total: int) -> None:
        self.acked = min(total, self.sent)
        self.stalled = False
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
            blocked = self.acked is not None and self.sent - self.acked >= CLIENT_WINDOW
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


class Hub:
    """The shared terminal of one node container in this process."""

    def __init__(self, container_id: str) -> None:
        self.container_id = container_id
        self.clients: set[Client] = set()
        self.size = DEFAULT_SIZE
        self.driver: Client | None = None
        self.emulator = Emulator(*DEFAULT_SIZE)
        self.closed = False
        self.gone_callbacks: dict[Client, Callable[[], None]] = {}
        self._stream: tty.TTYStream | None = None
        self._pending = bytearray()
        self._fed = 0  # absolute offset the emulator has eaten up to
        self._resizes: deque[tuple[int, int, int]] = deque()  # (offset, cols, rows)
        self._emu_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._linger: asyncio.TimerHandle | None = None
        self._resize_lock = asyncio.Lock()
        self._pace_until = 0.0
        # Set whenever a client's queue drops below the high-water mark.
        self.space = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    @property
    def _received(self) -> int:
        return self._fed + len(self._pending)

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Attach, replay what the engine's log holds, then follow live output."""
        self._stream = await tty.attach_tty(self.container_id, logs=True)
        await self._replay()
        # The engine's log holds back a last line without a newline (often the prompt),
        # and after a restart the replay may be partial: changing the size makes the
        # program on the TTY (readline, vim, top) redraw what it shows.
        cols, rows = self.size
        with contextlib.suppress(EngineError):
            await tty.resize_tty(self.container_id, cols + 1, rows)
            await tty.resize_tty(self.container_id, cols, rows)
        self._tasks = [
            asyncio.create_task(self._read_loop(), name=f"tty-read-{self.container_id[:12]}"),
            asyncio.create_task(self._emulate(), name=f"tty-emu-{self.container_id[:12]}"),
        ]

    async def _replay(self) -> None:
        """Read the log replay until the stream goes quiet, and feed its tail."""
        assert self._stream is not None
        replay = bytearray()
        deadline = time.monotonic() + REPLAY_MAX_WAIT
        while time.monotonic() < deadline:
            try:
                data = await asyncio.wait_for(self._stream.read(READ_SIZE), REPLAY_QUIET)
            except TimeoutError:
                break
            if not data:
                break
            replay += data
            if len(replay) > 2 * REPLAY_KEEP:
                del replay[: len(replay) - REPLAY_KEEP]
        if len(replay) > REPLAY_KEEP:
            start = len(replay) - REPLAY_KEEP
            newline = replay.find(b"\n", start)
            del replay[: newline + 1 if newline >= 0 else start]
        cut = _safe_cut(replay, len(replay))
        for offset in range(0, cut, EMULATOR_SLICE):
            self.emulator.feed(bytes(replay[offset : min(offset + EMULATOR_SLICE, cut)]))
            await asyncio.sleep(0)
        self._pending = replay[cut:]
        self._fed = cut

    async def close(self) -> None:
        """Stop reading and close the attach; the shell in the node keeps running."""
        self.closed = True
        if _hubs.get(self.container_id) is self:
            del _hubs[self.container_id]
        if self._linger:
            self._linger.cancel()
        for task in self._tasks:
            task.cancel()
        for client in list(self.clients):
            self.leave(client)
        if self._stream:
            await self._stream.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _schedule_linger(self) -> None:
        if self._linger:
            self._linger.cancel()
        self._linger = self.loop.call_later(
            LINGER_SECONDS, lambda: asyncio.ensure_future(self._close_if_idle())
        )

    async def _close_if_idle(self) -> None:
        if not self.clients and not self.closed:
            await self.close()

    # --- clients -------------------------------------------------------------------

    def join(
        self, send_bytes: Sender, send_json: JsonSender, on_gone: Callable[[], None]
    ) -> Client:
        """Add a client: it gets a status message, the snapshot once, then live output."""
        if self._linger:
            self._linger.cancel()
            self._linger = None
        client = Client(self, send_bytes, send_json)
        client.buffer += self.snapshot()
        self.clients.add(client)
        self.gone_callbacks[client] = on_gone
        client.task = asyncio.create_task(client.pump(), name="tty-client")
        return client

    def leave(self, client: Client) -> None:
        self.clients.discard(client)
        self.space.set()
        self.gone_callbacks.pop(client, None)
        if client.task:
            client.task.cancel()
        if self.driver is client:
            self.driver = max(self.clients, key=lambda c: c.last_active, default=None)
            if self.driver and self.driver.size and self.driver.size != self.size:
                asyncio.ensure_future(self._apply_size(self.driver.size))
        if not self.clients and not self.closed:
            self._schedule_linger()

    def snapshot(self) -> bytes:
        """The emulator's state plus the bytes it has not eaten: the stream so far."""
        return self.emulator.snapshot() + bytes(self._pending)

    async def input(self, client: Client, data: bytes) -> None:
        """Type into the TTY; the typist becomes the driver and its size applies."""
        client.last_active = time.monotonic()
        if self.driver is not client:
            self.driver = client
            if client.size and client.size != self.size:
                await self._apply_size(client.size)
        if self._stream is None or self.closed:
            return
        with contextlib.suppress(ConnectionError, OSError):
            await self._stream.write(data)

    async def resize(self, client: Client, cols: int, rows: int) -> None:
        """Record a client's size; the TTY follows the driver (see docs/protocol.md)."""
        client.size = (cols, rows)
        if self.driver is None or self.driver is client:
            client.last_active = time.monotonic()
            self.driver = client
            await self._apply_size(client.size)

    async def _apply_size(self, size: tuple[int, int]) -> None:
        async with self._resize_lock:
            if size == self.size or self.closed:
                return
            self.size = size
            self._resizes.append((self._received, *size))
            self._emu_wake.set()
            try:
                await tty.resize_tty(self.container_id, *size)
            except EngineError as exc:
                log.info("could not resize %s: %s", self.container_id[:12], exc)

    # --- output --------------------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self._stream is not None
        while True:
            data = await self._stream.read(READ_SIZE)
            if not data:
                if await self._reattach():
                    continue
                self._gone()
                if self._stream:
                    await self._stream.close()
                return
            self._take(data)
            # Pace the reader: while it waits the engine's buffers fill and the program
            # writing the flood blocks, which keeps every queue and the CPU bounded.
            if any(client.acked is None for client in self.clients):
                now = time.monotonic()
                self._pace_until = max(self._pace_until, now) + len(data) / HUB_READ_RATE
                if self._pace_until - now > 0.02:
                    await asyncio.sleep(self._pace_until - now)
            else:
                self._pace_until = 0.0
                await self._wait_for_space()

    async def _wait_for_space(self) -> None:
        """Wait until no acknowledging client is backed up, dropping the slow ones."""
        deadline = time.monotonic() + SLOW_CLIENT_SECONDS
        while True:
            full = [client for client in self.clients if client.backed_up]
            if not full:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                for client in full:
                    client.fall_behind()
                return
            self.space.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.space.wait(), remaining)

    def _take(self, data: bytes) -> None:
        self._pending += data
        if len(self._pending) > EMULATOR_BACKLOG:
            self._skip_ahead()
        self._emu_wake.set()
        for client in list(self.clients):
            client.push(data)

    def _skip_ahead(self) -> None:
        drop = len(self._pending) - EMULATOR_KEEP
        newline = self._pending.find(b"\n", drop)
        drop = newline + 1 if 0 <= newline < len(self._pending) - 1 else drop
        del self._pending[:drop]
        self._fed += drop
        while self._resizes and self._resizes[0][0] <= self._fed:
            _, cols, rows = self._resizes.popleft()
            self.emulator.resize(cols, rows)

    async def _emulate(self) -> None:
        while True:
            await self._emu_wake.wait()
            self._emu_wake.clear()
            while self._pending or self._resizes:
                # The turn comes first: while it waits, output arrives (and a skip-ahead
                # may drop the oldest), so the slice is cut from what is there after.
                await _budget.turn()
                if not self._feed_slice():
                    break

    def _feed_slice(self) -> bool:
        """Apply the resizes that are due and feed the emulator one slice. Returns False
        when there is nothing it can eat yet (no complete line, no escape to cut at)."""
        while self._resizes and self._resizes[0][0] <= self._fed:
            _, cols, rows = self._resizes.popleft()
            self.emulator.resize(cols, rows)
        limit = min(len(self._pending), EMULATOR_SLICE)
        if self._resizes:
            limit = min(limit, self._resizes[0][0] - self._fed)
        at_marker = bool(self._resizes) and limit == self._resizes[0][0] - self._fed
        cut = limit if at_marker else _safe_cut(self._pending, limit)
        if cut <= 0 and len(self._pending) > EMULATOR_KEEP:
            cut = limit  # no safe point in a long run: take it as it is
        if cut <= 0:
            return False
        chunk = bytes(self._pending[:cut])
        del self._pending[:cut]
        self._fed += cut
        started = time.monotonic()
        self.emulator.feed(chunk)
        _budget.spent(time.monotonic() - started)
        return True

    async def _reattach(self) -> bool:
        """After the stream ended: True when attached again, False when the node is gone."""
        if self.closed:
            return False
        for delay in (0.2, 0.5, 1.0, 2.0):
            try:
                if not await tty.container_running(self.container_id):
                    return False
                stream = await tty.attach_tty(self.container_id, logs=False)
            except NodeGone:
                return False
            except EngineError as exc:
                log.info("reattaching %s: %s", self.container_id[:12], exc)
                await asyncio.sleep(delay)
                continue
            old, self._stream = self._stream, stream
            if old:
                await old.close()
            return True
        return False

    def _gone(self) -> None:
        self.closed = True
        if _hubs.get(self.container_id) is self:
            del _hubs[self.container_id]
        for client, callback in list(self.gone_callbacks.items()):
            if client.task:
                client.task.cancel()
            callback()
        self.clients.clear()
        self.gone_callbacks.clear()
        self._tasks[1].cancel()


# --- the registry -------------------------------------------------------------------

_hubs: dict[str, Hub] = {}
_starting: dict[str, asyncio.Future[Hub]] = {}


async def get_hub(container_id: str) -> Hub:
    """The running hub of a container, started on first use.

    Raises NodeGone when the container does not exist, EngineError when the engine fails.
    """
    loop = asyncio.get_running_loop()
    hub = _hubs.get(container_id)
    if hub and not hub.closed and hub.loop is loop:
        return hub
    starting = _starting.get(container_id)
    if starting and starting.get_loop() is loop:
        return await asyncio.shield(starting)
    future: asyncio.Future[Hub] = loop.create_future()
    _starting[container_id] = future
    try:
        hub = Hub(container_id)
        await hub.start()
    except BaseException as exc:
        future.set_exception(exc)
        future.exception()  # retrieved here so a lone failure is not logged as unhandled
        raise
    finally:
        _starting.pop(container_id, None)
    _hubs[container_id] = hub
    future.set_result(hub)
    return hub


async def close_all() -> None:
    """Close every hub of the running loop (tests, shutdown)."""
    loop = asyncio.get_running_loop()
    for hub in [h for h in _hubs.values() if h.loop is loop]:
        await hub.close()
    for key in [k for k, h in _hubs.items() if h.loop.is_closed()]:
        del _hubs[key]
