"""The classroom wall's websockets, for a workshop's instructors only.

``/ws/workshops/<id>/wall/`` streams the roster and every visible seat's screen as text,
at most once a THUMB_INTERVAL and only when it changed: thumbnails skip ahead to the
newest screen instead of queueing output, and hidden ones cost nothing per keystroke.
``/ws/workshops/<id>/seats/<n>/nodes/<node>/terminal/`` is the terminal protocol
(docs/protocol.md), read-only: it never resizes the trainee's terminal, and types only
after ``{"type": "takeover", "active": true}``, the trainee's page being told.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from sessions_app import events
from sessions_app.models import Node, Session
from terminals.consumers import TerminalConsumer
from terminals.watch import Watch
from workshops.auth import is_instructor
from workshops.models import Seat, Workshop
from workshops.serialize import seats_of

log = logging.getLogger(__name__)

CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
THUMB_INTERVAL = 1.0
ROSTER_INTERVAL = 2.0
# "The instructor is typing" is told to the trainee at most this often.
TYPING_NOTICE_INTERVAL = 2.0
MAX_VISIBLE = 500
READ_ONLY = 'watching is read-only; send {"type": "takeover", "active": true} to type'


def _allowed(user: Any, workshop_id: str) -> tuple[Workshop | None, str]:
    """The workshop when ``user`` instructs it; else None and the refusal's code."""
    if not is_instructor(user):
        return None, "forbidden"
    found = Workshop.objects.of_instructor(user).filter(pk=workshop_id).first()
    return found, ("" if found else "workshop_not_found")


@database_sync_to_async
def _authorise(user: Any, workshop_id: str) -> tuple[Workshop | None, str]:
    return _allowed(user, workshop_id)


@database_sync_to_async
def _roster(workshop: Workshop) -> tuple[list[dict[str, Any]], dict[int, str], bool]:
    """The seats' JSON, the container of each seat's first node, whether still running."""
    workshop.refresh_from_db()
    seats = seats_of(workshop)
    first: dict[int, str] = {}
    rows = (
        Node.objects.filter(session__seat__workshop=workshop, session__ended_at__isnull=True)
        .exclude(status=Node.Status.GONE)
        .exclude(container_id="")
        .order_by("created_at", "id")
        .values_list("session__seat__number", "container_id")
    )
    for number, container_id in rows:
        first.setdefault(number, container_id)
    return seats, first, workshop.is_running()


class WallConsumer(AsyncJsonWebsocketConsumer):
    """One instructor's wall: the roster and the visible seats' screens."""

    async def connect(self) -> None:
        self.watches: dict[int, tuple[str, Watch]] = {}
        self.visible: set[int] | None = None  # None: every seat
        self.task: asyncio.Task[None] | None = None
        await self.accept()
        workshop_id = str(self.scope["url_route"]["kwargs"]["workshop_id"])
        workshop, refusal = await _authorise(self.scope.get("user"), workshop_id)
        if workshop is None:
            await self._refuse(refusal)
            return
        self.workshop = workshop
        self.task = asyncio.ensure_future(self._stream())

    async def _refuse(self, code: str) -> None:
        messages = {
            "forbidden": "Only the workshop's instructors may watch it; log in first.",
            "workshop_not_found": "There is no such workshop, or you do not run it.",
        }
        close = CLOSE_FORBIDDEN if code == "forbidden" else CLOSE_NOT_FOUND
        await self.send_json({"type": "error", "error": {"code": code, "message": messages[code]}})
        await self.close(code=close)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            message = json.loads(text_data or "")
        except (ValueError, RecursionError):
            return
        if not isinstance(message, dict) or message.get("type") != "visible":
            return
        seats = message.get("seats")
        if seats is None:
            self.visible = None
        elif isinstance(seats, list) and len(seats) <= MAX_VISIBLE:
            self.visible = {n for n in seats if isinstance(n, int) and not isinstance(n, bool)}
            for number in [n for n in self.watches if n not in self.visible]:
                self.watches.pop(number)[1].close()
            # New thumbnails get their screen at once.
            for _, watch in self.watches.values():
                watch.shown = -1

    async def disconnect(self, code: int) -> None:
        if self.task is not None:
            self.task.cancel()
        for _, watch in getattr(self, "watches", {}).values():
            watch.close()
        self.watches = {}

    async def _stream(self) -> None:
        last_roster: list[dict[str, Any]] | None = None
        next_roster = 0.0
        first: dict[int, str] = {}
        while True:
            now = time.monotonic()
            if now >= next_roster:
                next_roster = now + ROSTER_INTERVAL
                seats, first, running = await _roster(self.workshop)
                if seats != last_roster:
                    last_roster = seats
                    await self.send_json({"type": "roster", "seats": seats, "running": running})
                if not running:
                    await self.close(code=1000)
                    return
            await self._update_watches(first)
            for number, (_, watch) in sorted(self.watches.items()):
                if watch.changed():
                    await self.send_json({"type": "screen", "seat": number, **watch.read()})
            await asyncio.sleep(THUMB_INTERVAL)

    async def _update_watches(self, first: dict[int, str]) -> None:
        for number, container_id in first.items():
            if self.visible is not None and number not in self.visible:
                continue
            held = self.watches.get(number)
            if held and held[0] == container_id and not held[1].gone:
                continue
            if held:
                held[1].close()
            watch = await Watch.open(container_id)
            if watch is None:
                self.watches.pop(number, None)
            else:
                self.watches[number] = (container_id, watch)
        for number in [n for n in self.watches if n not in first]:
            self.watches.pop(number)[1].close()


@database_sync_to_async
def _seat_node(
    user: Any, workshop_id: str, number: int, name: str
) -> tuple[str, Session | None, Node | None]:
    workshop, refusal = _allowed(user, workshop_id)
    if workshop is None:
        return refusal, None, None
    seat = Seat.objects.filter(workshop=workshop, number=number).select_related("session").first()
    session = seat.session if seat else None
    if session is None or not session.is_active():
        return "seat_not_found", None, None
    return "", session, session.nodes.filter(name=name).first()


class SeatTerminalConsumer(TerminalConsumer):
    """A seat's terminal for its instructor: watching, or taking over."""

    async def find(self) -> tuple[Session | None, Node | None]:
        kwargs = self.scope["url_route"]["kwargs"]
        refusal, session, node = await _seat_node(
            self.scope.get("user"), str(kwargs["workshop_id"]), kwargs["number"], self.node_name
        )
        self.taking_over = False
        self._told_typing = 0.0
        if refusal == "forbidden":
            await self._fail("forbidden", "Only the workshop's instructors may watch it.", 4403)
            return None, None
        if session is not None:
            self.session_id = session.id
        return session, node

    async def _fail(self, code: str, message: str, close_code: int) -> None:
        with contextlib.suppress(Exception):
            await super()._fail(code, message, close_code)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data and self.client is not None:
            with contextlib.suppress(ValueError, RecursionError):
                message = json.loads(text_data)
                if isinstance(message, dict) and message.get("type") == "takeover":
                    await self._takeover(message.get("active"))
                    return
        await super().receive(text_data, bytes_data)

    async def _takeover(self, active: object) -> None:
        if not isinstance(active, bool):
            await self.error("invalid_takeover", "takeover needs active, true or false")
            return
        if active != self.taking_over:
            self.taking_over = active
            await events.publish(
                self.session_id,
                {"type": "instructor.takeover", "active": active, "node": self.node_name},
            )
        await self.send_json({"type": "takeover", "active": active})

    async def _input(self, message: dict[str, Any]) -> None:
        if not self.taking_over:
            await self.error(
                "read_only",
                'watching is read-only; send {"type": "takeover", "active": true} first',
            )
            return
        now = time.monotonic()
        if now - self._told_typing >= TYPING_NOTICE_INTERVAL:
            self._told_typing = now
            await events.publish(
                self.session_id, {"type": "instructor.typing", "node": self.node_name}
            )
        await super()._input(message)

    async def _resize(self, message: dict[str, Any]) -> None:
        """The watcher's window never sizes the trainee's terminal."""

    async def disconnect(self, code: int) -> None:
        if getattr(self, "taking_over", False):
            await events.publish(
                self.session_id,
                {"type": "instructor.takeover", "active": False, "node": self.node_name},
            )
        await super().disconnect(code)
