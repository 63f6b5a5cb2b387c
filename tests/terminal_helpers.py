"""Helpers for driving the terminal websocket in-process, as a browser would."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from channels.testing import WebsocketCommunicator

from pwd_site.routing import websocket_application


class Terminal:
    """A WebsocketCommunicator that keeps the TTY output and control messages apart."""

    def __init__(self, path: str, origin: str | None = "http://testserver") -> None:
        headers = [(b"host", b"testserver")]
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        self.comm = WebsocketCommunicator(websocket_application, path, headers=headers)
        self.output = bytearray()
        self.messages: list[dict[str, Any]] = []
        self.closed: int | None = None

    async def connect(self) -> tuple[bool, int | str | None]:
        return await self.comm.connect(timeout=30)

    async def send(self, message: dict[str, Any]) -> None:
        await self.comm.send_to(text_data=json.dumps(message))

    async def type(self, text: str) -> None:
        await self.send({"type": "input", "data": text})

    async def _pump_one(self, within: float) -> None:
        # receive_output() would cancel the application on a timeout; poll the queue.
        if self.comm.future.done() and self.comm.output_queue.empty():
            self.comm.future.result()
            self.closed = self.closed or 1006
            return
        event = await asyncio.wait_for(self.comm.output_queue.get(), within)
        if event["type"] == "websocket.close":
            self.closed = event.get("code", 1000)
        elif event.get("bytes") is not None:
            self.output += event["bytes"]
        elif event.get("text") is not None:
            self.messages.append(json.loads(event["text"]))

    async def until(self, predicate, within: float = 15.0) -> None:
        """Read until ``predicate(self)`` holds; fail with what was seen so far."""
        deadline = time.monotonic() + within
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0 or self.closed is not None:
                raise AssertionError(
                    f"timed out; closed={self.closed} messages={self.messages[-5:]} "
                    f"output tail={self.text[-600:]!r}"
                )
            try:
                await self._pump_one(min(left, 1.0))
            except TimeoutError:
                continue

    async def until_text(self, needle: str, within: float = 15.0) -> None:
        await self.until(lambda t: needle in t.text, within)

    async def drain(self, quiet: float = 0.3) -> None:
        """Read whatever arrives until nothing has come for ``quiet`` seconds."""
        while True:
            try:
                await self._pump_one(quiet)
            except TimeoutError:
                return
            if self.closed is not None:
                return

    def errors(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == "error"]

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    async def close(self) -> None:
        await self.comm.disconnect()
