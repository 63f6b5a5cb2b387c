"""One hub per node per process: one attach stream to the node's TTY, fanned out.

The hub reads the TTY and appends the bytes to every client's bounded queue
(:mod:`terminals.client`) and to a trailing emulator (:mod:`terminals.screen`), so that
a client joining late, or one that fell behind, gets the screen as it is now exactly
once, then live output. It owns the attach (and reattach), the pacing of its reads and
the size policy; the registry at the end keeps one hub per container.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from sessions_app.engine import EngineError, NodeGone, tty
from terminals.client import (
    ALONE_SLOW_SECONDS,
    CLIENT_HIGH_WATER,
    CLIENT_QUEUE_MAX,
    SLOW_CLIENT_SECONDS,
    Client,
    JsonSender,
    Sender,
)
from terminals.screen import EMULATOR_BACKLOG, REPLAY_KEEP, TrailingScreen

__all__ = ["CLIENT_HIGH_WATER", "CLIENT_QUEUE_MAX", "EMULATOR_BACKLOG", "Client", "Hub"]

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
# While a client that never acknowledges is connected, the hub reads the TTY no faster
# than this: nothing else bounds what daphne buffers for such a client. Far more than
# anyone reads, and low enough that three such floods (the engine logging them, the
# server framing them) leave other terminals' echo alone (docs/benchmarks.md).
HUB_READ_RATE = 1024 * 1024
REPLAY_QUIET = 0.15
REPLAY_MAX_WAIT = 3.0
# How long a hub keeps its attach after the last client left (a reload comes back fast).
LINGER_SECONDS = 10.0
DEFAULT_SIZE = (80, 24)


class Hub:
    """The shared terminal of one node container in this process."""

    def __init__(self, container_id: str) -> None:
        self.container_id = container_id
        self.clients: set[Client] = set()
        self.size = DEFAULT_SIZE
        self.driver: Client | None = None
        self.screen = TrailingScreen(*DEFAULT_SIZE)
        self.closed = False
        self.gone_callbacks: dict[Client, Callable[[], None]] = {}
        self._stream: tty.TTYStream | None = None
        self._reader: asyncio.Task[None] | None = None
        self._trailer: asyncio.Task[None] | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._resize_lock = asyncio.Lock()
        self._pace_until = 0.0
        # Set whenever a client's queue drops below the high-water mark.
        self.space = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    @property
    def _tasks(self) -> list[asyncio.Task[None]]:
        return [task for task in (self._reader, self._trailer) if task is not None]

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Attach, replay what the engine's log holds, then follow live output."""
        self._stream = await tty.attach_tty(self.container_id, logs=True)
        await self.screen.replay(await self._read_replay())
        # The engine's log holds back a last line without a newline (often the prompt),
        # and after a restart the replay may be partial: changing the size makes the
        # program on the TTY (readline, vim, top) redraw what it shows.
        cols, rows = self.size
        with contextlib.suppress(EngineError):
            await tty.resize_tty(self.container_id, cols + 1, rows)
            await tty.resize_tty(self.container_id, cols, rows)
        short = self.container_id[:12]
        self._reader = asyncio.create_task(self._read_loop(), name=f"tty-read-{short}")
        self._trailer = asyncio.create_task(self.screen.run(), name=f"tty-emu-{short}")

    async def _read_replay(self) -> bytearray:
        """Read the log replay until the stream goes quiet (its tail is what counts)."""
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
        return replay

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
        client.task = asyncio.create_task(
            client.pump(), name=f"tty-client-{self.container_id[:12]}"
        )
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
        """The stream so far, as the screen it draws (see TrailingScreen.snapshot)."""
        return self.screen.snapshot()

    # --- the size policy -----------------------------------------------------------

    async def type_from(self, client: Client, data: bytes) -> None:
        """``client`` types: it becomes the driver and its size applies."""
        client.last_active = time.monotonic()
        if self.driver is not client:
            self.driver = client
            if client.size and client.size != self.size:
                await self._apply_size(client.size)
        if self._stream is None or self.closed:
            return
        with contextlib.suppress(ConnectionError, OSError):
            await self._stream.write(data)

    async def size_from(self, client: Client, cols: int, rows: int) -> None:
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
            self.screen.resize(*size)
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
            self.screen.take(data)
            for client in list(self.clients):
                client.push(data)
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
        """Wait until no acknowledging client is backed up. One that holds another back
        is dropped after SLOW_CLIENT_SECONDS; while every one is backed up (they all draw
        slower than the program writes) they are waited for up to ALONE_SLOW_SECONDS."""
        started = time.monotonic()
        while True:
            acking = [client for client in self.clients if client.acked is not None]
            full = [client for client in acking if client.backed_up]
            if not full:
                return
            keeping_up = any(not client.stalled and not client.backed_up for client in acking)
            limit = SLOW_CLIENT_SECONDS if keeping_up else ALONE_SLOW_SECONDS
            remaining = started + limit - time.monotonic()
            if remaining <= 0:
                for client in full:
                    client.fall_behind()
                return
            self.space.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.space.wait(), remaining)

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
        if self._trailer:
            self._trailer.cancel()


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
