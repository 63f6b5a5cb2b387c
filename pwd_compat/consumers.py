"""PWD's session websocket: JSON text frames ``{"name", "args"}`` (docs/compat.md).

On connect every running node's status and recent output is sent once (the terminal
hubs' snapshots); nodes added later are attached as their ``node.added`` event arrives.
Anything malformed from the client (not JSON, unknown names, non-string arguments) is
ignored, as PWD's SDK expects nothing back.
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

from pwd_compat.attach import Terminals, running_nodes
from pwd_compat.wire import proxy_host
from sessions_app import events, services
from sessions_app.models import Node, Session

log = logging.getLogger(__name__)

MAX_FRAME = 256 * 1024
MAX_COLS, MAX_ROWS = 500, 200
TOUCH_INTERVAL = 5.0
# How often a socket checks that its session is still active: an end it did not hear (the
# reaper is another process; the in-memory channel layer does not cross processes).
LIVENESS_INTERVAL = 20.0
VIEWPORT = "compat.viewport"  # the message type on the compat group


def compat_group(session_id: str) -> str:
    """PWD sockets of a session only (a native viewer has no handler for their messages)."""
    return f"compat.{session_id}"


@database_sync_to_async
def _active(session_id: str) -> Session | None:
    session = Session.objects.active().filter(pk=session_id).first()
    if session is not None:
        session.touch()
    return session


@database_sync_to_async
def _touch(session: Session) -> None:
    session.touch()


@database_sync_to_async
def _session_active(session_id: str) -> bool:
    return Session.objects.active().filter(pk=session_id).exists()


def _size(args: list[Any]) -> tuple[int, int] | None:
    if len(args) < 2:
        return None
    cols, rows = args[0], args[1]
    for value, high in ((cols, MAX_COLS), (rows, MAX_ROWS)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
            return None
    return cols, rows


class CompatConsumer(AsyncWebsocketConsumer):
    """One PWD client (the SDK, or the PWD web UI) on one session."""

    session: Session | None = None
    terminals: Terminals | None = None
    groups_joined: tuple[str, ...] = ()

    async def connect(self) -> None:
        self.session_id: str = self.scope["url_route"]["kwargs"]["session_id"]
        self.ended = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_touch = 0.0
        await self.accept()
        session = await _active(self.session_id)
        if session is None:
            return  # as PWD: the upgrade succeeds and nothing is ever sent
        self.session = session
        self.terminals = Terminals(session, self.emit)
        # Listen first, then list: a node added in between is heard, and attached once.
        for group in (events.group_name(session.id), compat_group(session.id)):
            try:
                await self.channel_layer.group_add(group, self.channel_name)
                self.groups_joined += (group,)
            except Exception as exc:  # noqa: BLE001 - the layer (Redis) is down: no events
                log.warning("PWD socket of %s: no channel layer: %s", session.short_id, exc)
        for node in await running_nodes(session.id):
            await self.terminals.attach(node)
        self._spawn(self._watch_session())

    async def disconnect(self, code: int) -> None:
        if self.terminals is not None:
            self.terminals.close()
        for group in self.groups_joined:
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(group, self.channel_name)
        for task in list(getattr(self, "_tasks", ())):
            task.cancel()

    async def emit(self, name: str, args: list[Any]) -> None:
        await self.send(text_data=json.dumps({"name": name, "args": args}))

    # --- from the client ---------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None or self.terminals is None or len(text_data) > MAX_FRAME:
            return
        try:
            message = json.loads(text_data)
        except (ValueError, RecursionError):
            return
        if not isinstance(message, dict) or not isinstance(message.get("args", []), list):
            return
        kind, args = message.get("name"), message.get("args", [])
        if kind == "instance terminal in":
            await self._terminal_in(args)
        elif kind == "instance viewport resize":
            await self._viewport(args)
        elif kind == "session close":
            self._spawn(self._close_session())

    async def _terminal_in(self, args: list[Any]) -> None:
        if len(args) < 2 or not isinstance(args[0], str) or not isinstance(args[1], str):
            return
        assert self.terminals is not None
        assert self.session is not None
        try:
            data = args[1].encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form
            return
        client = await self.terminals.attach_by_name(args[0][:64])
        if client is None:
            return
        await client.input(data)
        now = time.monotonic()
        if now - self._last_touch >= TOUCH_INTERVAL:
            self._last_touch = now
            self._spawn(_touch(self.session))

    async def _viewport(self, args: list[Any]) -> None:
        size = _size(args)
        if size is None:
            return
        assert self.terminals is not None
        assert self.session is not None
        for client in list(self.terminals.clients.values()):
            await client.resize(*size)
        try:
            await self.channel_layer.group_send(
                compat_group(self.session.id), {"type": VIEWPORT, "size": list(size)}
            )
        except Exception:  # noqa: BLE001 - best effort, as events are; this one hears it
            await self.emit("instance viewport resize", list(size))

    async def _close_session(self) -> None:
        assert self.session is not None
        with contextlib.suppress(Exception):
            await services.end_session(self.session)
        await self._end()

    # --- from the session's events -------------------------------------------------------

    async def session_event(self, message: dict[str, Any]) -> None:
        event = message.get("event") or {}
        kind = event.get("type")
        if self.terminals is None or self.session is None:
            return
        if kind == "node.added" and isinstance(event.get("node"), dict):
            await self._added(event["node"])
        elif kind in {"node.removed", "node.gone"} and isinstance(event.get("name"), str):
            if event["name"] in self.terminals:
                self.terminals.detach(event["name"])
                await self.emit("instance delete", [event["name"]])
        elif kind == "session.ended":
            await self._end()

    async def compat_viewport(self, message: dict[str, Any]) -> None:
        await self.emit("instance viewport resize", message["size"])

    async def _added(self, data: dict[str, Any]) -> None:
        assert self.terminals is not None
        assert self.session is not None
        name = data.get("name")
        if not isinstance(name, str) or name in self.terminals:
            return
        node = Node(name=name, hostname=data.get("hostname") or name)
        await self.emit(
            "instance new",
            [name, data.get("ip") or "", node.hostname, proxy_host(self.session, node)],
        )
        found = await self.terminals.attach_by_name(name)
        if found is None:
            log.info("PWD socket: %s was added but is not running", name)

    async def _end(self) -> None:
        """Each instance's ``instance delete``, then ``session end``, then the close."""
        if self.ended or self.terminals is None:
            return
        self.ended = True
        names = self.terminals.names()
        self.terminals.close()
        for name in names:
            await self.emit("instance delete", [name])
        await self.emit("session end", [])
        await self.close()

    async def _watch_session(self) -> None:
        while not self.ended:
            await asyncio.sleep(LIVENESS_INTERVAL)
            with contextlib.suppress(Exception):  # a database hiccup is not an end
                if not await _session_active(self.session_id):
                    await self._end()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
