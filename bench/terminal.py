"""Two ways to a node's TTY, driven the same way: the app's websocket, and a direct
attach to the engine (the floor: the same attach the terminal bridge itself makes)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Protocol

import websockets

from sessions_app.engine import tty as engine_tty

# Output longer than this is enough to spot a marker that spans two reads.
_TAIL = 128


class Terminal(Protocol):
    async def send(self, data: str) -> None: ...

    async def recv(self) -> bytes:
        """The next piece of TTY output (control messages are skipped)."""
        ...

    async def close(self) -> None: ...


class DirectTerminal:
    """A raw attach to the container's TTY on the engine's socket."""

    def __init__(self, stream: engine_tty.TTYStream) -> None:
        self.stream = stream

    @classmethod
    async def open(cls, container_id: str) -> DirectTerminal:
        return cls(await engine_tty.attach_tty(container_id, logs=False))

    async def send(self, data: str) -> None:
        await self.stream.write(data.encode())

    async def recv(self) -> bytes:
        data = await self.stream.read(1 << 16)
        if not data:
            raise ConnectionError("the attach stream ended")
        return data

    async def close(self) -> None:
        await self.stream.close()


class WebsocketTerminal:
    """The app's terminal websocket, as a browser would use it (minus rendering).

    Like the page, it acknowledges the output it has processed, which lets the hub pace
    the node's output by this client instead of by its fixed rate for clients that
    never acknowledge. With ``acks`` false it is such a client (a tool, an old page).
    """

    # The page acknowledges in steps too; one ack per 64 KiB frame is what it sends
    # under a flood.
    ACK_EVERY = 64 * 1024

    def __init__(self, ws: websockets.ClientConnection, acks: bool = True) -> None:
        self.ws = ws
        self.acks = acks
        self.received = 0
        self.acked = 0

    @classmethod
    async def open(cls, url: str, acks: bool = True) -> WebsocketTerminal:
        ws = await websockets.connect(
            url, max_size=None, compression=None, ping_interval=None, open_timeout=60
        )
        return cls(ws, acks)

    async def send(self, data: str) -> None:
        await self.ws.send(json.dumps({"type": "input", "data": data}))

    async def recv(self) -> bytes:
        while True:
            message = await self.ws.recv()
            if isinstance(message, bytes):
                self.received += len(message)
                if not self.acks:
                    return message
                if self.received - self.acked >= self.ACK_EVERY or len(message) < 4096:
                    self.acked = self.received
                    await self.ws.send(json.dumps({"type": "ack", "bytes": self.received}))
                return message
            control = json.loads(message)
            if control.get("type") == "error":
                raise ConnectionError(f"terminal error: {control}")

    async def close(self) -> None:
        await self.ws.close()


async def settle(term: Terminal, quiet: float = 0.3, limit: float = 10.0) -> bytes:
    """Read until the terminal has been quiet for ``quiet`` seconds."""
    seen = bytearray()
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            seen += await asyncio.wait_for(term.recv(), quiet)
        except TimeoutError:
            break
    return bytes(seen)


async def wait_for(term: Terminal, needle: bytes, limit: float) -> int:
    """Read until ``needle`` shows up; returns the bytes read."""
    total = 0
    tail = b""
    async with asyncio.timeout(limit):
        while True:
            data = await term.recv()
            total += len(data)
            if needle in tail + data:
                return total
            tail = (tail + data)[-_TAIL:]


async def ready_shell(term: Terminal) -> None:
    """Wait for the shell to answer (a node's login shell may still be starting)."""
    await settle(term)
    marker = random.randrange(10**8, 10**9)
    await term.send(f"echo R$(({marker}+1))R\r")
    await wait_for(term, f"R{marker + 1}R".encode(), 60)
    await settle(term)


async def throughput(term: Terminal, mib: int) -> tuple[int, float]:
    """Bytes of output and seconds for ``base64`` of (mib * 3/4) MiB of random data."""
    raw_kib = mib * 1024 * 3 // 4
    marker = random.randrange(10**12, 10**13)
    await term.send(f"head -c {raw_kib}K /dev/urandom | base64; echo PWDBENCH$(({marker}+1))END\r")
    started = time.perf_counter()
    total = await wait_for(term, f"PWDBENCH{marker + 1}END".encode(), 600)
    elapsed = time.perf_counter() - started
    await settle(term)
    return total, elapsed


async def discard(term: Terminal) -> None:
    """Read and drop output until cancelled (a client that keeps up but never acks)."""
    while True:
        await term.recv()


async def keystroke(term: Terminal, char: str, echo: bytes, limit: float = 10) -> float:
    """Seconds from sending one keystroke until its echo comes back."""
    started = time.perf_counter()
    await term.send(char)
    await wait_for(term, echo, limit)
    return time.perf_counter() - started


async def echo_latencies(term: Terminal, samples: int, gap: float = 0.02) -> list[float]:
    """Round trips of single keystrokes, alternately a letter (``x``: no prompt holds
    one, so a late prompt redraw is not mistaken for the echo) and DEL to rub it out."""
    results = []
    for i in range(samples):
        if i % 2 == 0:
            results.append(await keystroke(term, "x", b"x"))
        else:
            # readline echoes DEL as a backspace (then erases the cell).
            results.append(await keystroke(term, "\x7f", b"\x08"))
        await asyncio.sleep(gap)
    if samples % 2:
        await term.send("\x7f")
        await settle(term, 0.1)
    return results
