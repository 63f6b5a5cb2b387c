"""One PWD socket's terminals: each node's hub joined once, its output as PWD's frames."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async

from pwd_compat.output import OutputText
from sessions_app import services
from sessions_app.engine import EngineError, NodeGone
from sessions_app.models import Node, Session
from terminals import hub as hubs

log = logging.getLogger(__name__)

Send = Callable[[str, list[Any]], Awaitable[None]]


@database_sync_to_async
def running_nodes(session_id: str) -> list[Node]:
    return list(
        Node.objects.filter(session_id=session_id, status=Node.Status.RUNNING)
        .exclude(container_id="")
        .order_by("created_at")
    )


@database_sync_to_async
def running_node(session_id: str, name: str) -> Node | None:
    return (
        Node.objects.filter(session_id=session_id, name=name, status=Node.Status.RUNNING)
        .exclude(container_id="")
        .first()
    )


class Terminals:
    """The hub clients of one socket, by instance name; each attached at most once, so
    each node's recent output is sent exactly once per socket."""

    def __init__(self, session: Session, send: Send) -> None:
        self.session = session
        self.send = send
        self.clients: dict[str, hubs.Client] = {}
        self._tried: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return name in self._tried

    async def attach(self, node: Node) -> None:
        """Join ``node``'s hub: PWD's ``connect`` status, its recent output, then live."""
        if node.name in self._tried:
            return
        self._tried.add(node.name)
        try:
            hub = await hubs.get_hub(node.container_id)
        except NodeGone:
            await services.mark_gone(node)
            return
        except EngineError as exc:
            log.warning("PWD terminal of %s: %s", node, exc)
            self._tried.discard(node.name)
            return
        name, text = node.name, OutputText()

        async def out(data: bytes) -> None:
            for piece in text.pieces(data):
                await self.send("instance terminal out", [name, piece])

        async def status(message: dict[str, Any]) -> None:
            if message.get("state") == "connected":
                await self.send("instance terminal status", [name, "connect"])

        self.clients[name] = hub.join(out, status, lambda: self._gone(name))

    async def attach_by_name(self, name: str) -> hubs.Client | None:
        """The client of ``name``, attached now if the socket had not heard of it."""
        if name not in self._tried:
            node = await running_node(self.session.id, name)
            if node is not None:
                await self.attach(node)
        return self.clients.get(name)

    def _gone(self, name: str) -> None:
        self.clients.pop(name, None)

    def detach(self, name: str) -> None:
        self._tried.discard(name)
        client = self.clients.pop(name, None)
        if client is not None:
            client.leave()

    def names(self) -> list[str]:
        return sorted(self._tried)

    def close(self) -> None:
        for name in list(self._tried):
            self.detach(name)
