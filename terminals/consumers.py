"""The terminal websocket: authorise in connect, forward in receive, clean up in disconnect.

The protocol is described in docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from sessions_app import services
from sessions_app.engine import EngineError, NodeGone
from sessions_app.models import Node, Session
from terminals import hub as hubs

log = logging.getLogger(__name__)

CLOSE_NOT_FOUND = 4404
CLOSE_GONE = 4410
CLOSE_ENGINE = 4503
MAX_COLS = 500
MAX_ROWS = 200
MAX_INPUT = 256 * 1024
PING_INTERVAL = 20.0
# Session.touch is throttled to a write a second; a terminal asks far less often.
TOUCH_INTERVAL = 5.0


@database_sync_to_async
def _find_node(session_id: str, name: str) -> tuple[Session | None, Node | None]:
    session = Session.objects.filter(pk=session_id).first()
    if session is None or not session.is_active():
        return None, None
    node = session.nodes.filter(name=name).first()
    return session, node


@database_sync_to_async
def _touch(session: Session) -> None:
    session.touch()


@database_sync_to_async
def _session_active(session_id: str) -> bool:
    session = Session.objects.filter(pk=session_id).first()
    return session is not None and session.is_active()


def _int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


class TerminalConsumer(AsyncWebsocketConsumer):
    """One browser tab (or tool) on one node's shared terminal."""

    # Terminals talk to the engine, never to other processes: no channel layer, so a
    # Redis outage cannot take the shells down with it (an unknown alias means none).
    channel_layer_alias = "pwd-terminals-use-no-channel-layer"

    async def connect(self) -> None:
        kwargs = self.scope["url_route"]["kwargs"]
        self.session_id: str = kwargs.get("session_id", "")
        self.node_name: str = kwargs["node"]
        self.client: hubs.Client | None = None
        self.session: Session | None = None
        self.node: Node | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_touch = 0.0
        await self.accept()
        session, node = await self.find()
        if session is None:
            await self._fail("not_found", "no such session, or it has ended", CLOSE_NOT_FOUND)
            return
        if node is None or not node.container_id:
            await self._fail("not_found", f"no node {self.node_name} here", CLOSE_NOT_FOUND)
            return
        if node.status == Node.Status.GONE:
            await self._fail("node_gone", f"{self.node_name} is gone", CLOSE_GONE)
            return
        self.session = session
        self.node = node
        try:
            hub = await hubs.get_hub(node.container_id)
        except NodeGone:
            await services.mark_gone(node)
            await self._fail("node_gone", f"{self.node_name} is gone", CLOSE_GONE)
            return
        except EngineError as exc:
            log.warning("terminal of %s: %s", node, exc)
            await self._fail(
                "engine_unavailable", "the Docker engine does not answer", CLOSE_ENGINE
            )
            return
        self.client = hub.join(self._send_bytes, self.send_json, self._node_gone)
        self._spawn(self._keepalive())

    async def find(self) -> tuple[Session | None, Node | None]:
        """The active session and its node this socket is for (None: refused 4404);
        here the session id in the path is the credential."""
        return await _find_node(self.session_id, self.node_name)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections before every message, on a worker
        # thread: a thread hop per keystroke, slow when the loop is busy. Frames use no
        # database (activity is written in the background by a helper that closes its
        # own), so they skip it; connect and disconnect keep it.
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
        else:
            await super().dispatch(message)

    async def disconnect(self, code: int) -> None:
        if self.client is not None:
            self.client.leave()
            self.client = None
        for task in list(getattr(self, "_tasks", ())):
            task.cancel()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.error("binary_not_accepted", "send input as a JSON text frame")
            return
        if self.client is None:
            return
        if len(text_data) > MAX_INPUT:
            await self.error("too_large", f"a message may carry at most {MAX_INPUT} bytes")
            return
        try:
            message = json.loads(text_data)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply
            await self.error("invalid_json", "messages must be JSON objects")
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "input":
            await self._input(message)
        elif kind == "resize":
            await self._resize(message)
        elif kind == "ack":
            total = message.get("bytes")
            if not _int_in(total, 0, 1 << 62):
                await self.error("invalid_ack", "ack needs bytes, a whole number")
                return
            self.client.ack(total)
        elif kind == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.error("unknown_type", "type must be input, resize, ack or ping")

    async def _input(self, message: dict[str, Any]) -> None:
        data = message.get("data")
        if not isinstance(data, str):
            await self.error("invalid_input", "input needs data, a string")
            return
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800") has no UTF-8 form
            await self.error("invalid_input", "input data must be text without lone surrogates")
            return
        assert self.client is not None
        await self.client.input(raw)
        now = time.monotonic()
        if self.session is not None and now - self._last_touch >= TOUCH_INTERVAL:
            self._last_touch = now
            # In the background: echo must not wait for a database write.
            self._spawn(_touch(self.session))

    async def _resize(self, message: dict[str, Any]) -> None:
        cols, rows = message.get("cols"), message.get("rows")
        if not (_int_in(cols, 1, MAX_COLS) and _int_in(rows, 1, MAX_ROWS)):
            await self.error("invalid_resize", f"cols must be 1..{MAX_COLS} and rows 1..{MAX_ROWS}")
            return
        assert self.client is not None
        await self.client.resize(cols, rows)

    # --- helpers -------------------------------------------------------------------

    async def send_json(self, content: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(content))

    async def _send_bytes(self, data: bytes) -> None:
        await self.send(bytes_data=data)

    async def error(self, code: str, message: str) -> None:
        await self.send_json({"type": "error", "code": code, "message": message})

    async def _fail(self, code: str, message: str, close_code: int) -> None:
        await self.error(code, message)
        await self.close(code=close_code)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _node_gone(self) -> None:
        """Called by the hub when the container disappeared or stopped under the terminal.

        The node is not marked gone here: a container that stopped (an engine restart)
        is still there, and the reaper removes it as it marks it (``node.gone``)."""
        self.client = None
        self._spawn(self._fail("node_gone", f"{self.node_name} is gone", CLOSE_GONE))

    async def _keepalive(self) -> None:
        """Ping so idle terminals survive proxies; notice a session that has ended."""
        while True:
            await asyncio.sleep(PING_INTERVAL)
            with contextlib.suppress(Exception):
                if not await _session_active(self.session_id):
                    if self.client is not None:
                        self.client.leave()
                        self.client = None
                    await self._fail("session_ended", "the session has ended", CLOSE_GONE)
                    return
            await self.send_json({"type": "ping"})
