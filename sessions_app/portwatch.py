"""Which ports each node has open, and the ``node.ports`` event when that changes.

While someone watches a session (its events websocket), this process keeps one watch
per running node: a program in the node that reports its listening sockets and the
inner engine's published ports as they change (:mod:`sessions_app.engine.ports`). The
session's events, as its viewers receive them, tell it when nodes come and go. Nobody
watching, nothing runs; the node JSON then reads a node's ports once when it is asked
for (:func:`with_ports`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.db import database_sync_to_async

from sessions_app import engine, events, ports
from sessions_app.engine import ports as node_ports
from sessions_app.models import Node

log = logging.getLogger(__name__)

# A watch outlives its last viewer by this long, so that a page reload does not restart
# every node's program.
LINGER = 10.0
# A watch that failed (the engine did not answer) is tried again after this long.
RETRY = 5.0
# How long the node JSON waits for a one-shot read before it answers without ports.
READ_TIMEOUT = 3.0
# A one-shot read is reused this long: a client polling the session starts no exec each time.
READ_REUSE = 2.0
# Events that change which nodes a session has.
NODE_EVENTS = {"node.added", "node.removed", "node.gone"}

# container id -> its ports as last seen (by a watch or a read).
_known: dict[str, list[int]] = {}
# container id -> when a one-shot read last finished (loop time).
_read_at: dict[str, float] = {}
_sessions: dict[str, _SessionWatch] = {}


def known_ports(container_id: str) -> list[int]:
    """The node's ports as last seen in this process; [] when never read."""
    return _known.get(container_id, [])


def _watched(container_id: str) -> bool:
    return any(container_id in watch.nodes for watch in _sessions.values())


async def with_ports(nodes: list[Node]) -> list[Node]:
    """``nodes``, after reading the ports of each running one that no watch follows
    (all at once; a node that does not answer in time keeps what was last seen)."""
    now = asyncio.get_running_loop().time()
    unread = [
        n
        for n in nodes
        if n.status == Node.Status.RUNNING
        and n.container_id
        and not _watched(n.container_id)
        and now - _read_at.get(n.container_id, float("-inf")) >= READ_REUSE
    ]

    async def read(node: Node) -> None:
        with contextlib.suppress(engine.EngineError, TimeoutError):
            async with asyncio.timeout(READ_TIMEOUT):
                _known[node.container_id] = await node_ports.read_ports(node.container_id)
                _read_at[node.container_id] = asyncio.get_running_loop().time()

    if len(_known) > 10000:  # nodes long gone; what is live is read again
        _known.clear()
        _read_at.clear()
    await asyncio.gather(*(read(node) for node in unread))
    return nodes


async def with_port(node: Node) -> Node:
    """:func:`with_ports` for one node."""
    return (await with_ports([node]))[0]


def join(session_id: str) -> None:
    """A viewer of the session arrived: watch its nodes' ports (from now, in this process)."""
    watch = _sessions.get(session_id)
    if watch is None:
        watch = _sessions[session_id] = _SessionWatch(session_id)
    watch.viewers += 1
    watch.start()


def on_event(session_id: str, event: dict[str, Any]) -> None:
    """A viewer of the session received ``event``: follow its nodes coming and going."""
    watch = _sessions.get(session_id)
    if watch is not None and event.get("type") in {*NODE_EVENTS, "session.ended"}:
        watch.ended = watch.ended or event.get("type") == "session.ended"
        watch.changed.set()


def leave(session_id: str) -> None:
    """A viewer left; the watch stops LINGER seconds after the last one."""
    watch = _sessions.get(session_id)
    if watch is not None:
        watch.viewers = max(0, watch.viewers - 1)


@database_sync_to_async
def _running_nodes(session_id: str) -> tuple[str, dict[str, str]]:
    """The session's port token and its running nodes (name -> container id)."""
    rows = Node.objects.filter(session_id=session_id, status=Node.Status.RUNNING).exclude(
        container_id=""
    )
    token = rows.values_list("session__port_token", flat=True).first() or ""
    return token, dict(rows.values_list("name", "container_id"))


class _SessionWatch:
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.viewers = 0
        self.nodes: dict[str, asyncio.Task[None]] = {}
        self.task: asyncio.Task[None] | None = None
        self.changed = asyncio.Event()
        self.ended = False

    def start(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self._sync()
            idle_since = None
            while not self.ended:
                if self.viewers:
                    idle_since = None
                elif idle_since is None:
                    idle_since = loop.time()
                elif loop.time() - idle_since >= LINGER:
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1):
                        await self.changed.wait()
                if self.changed.is_set() and not self.ended:
                    self.changed.clear()
                    await self._sync()
        except Exception:  # noqa: BLE001 - a watch is best effort; the page still works
            log.warning("port watch of session %s stopped", self.session_id[:6], exc_info=True)
        finally:
            for task in self.nodes.values():
                task.cancel()
            self.nodes.clear()
            if _sessions.get(self.session_id) is self:
                del _sessions[self.session_id]

    async def _sync(self) -> None:
        token, running = await _running_nodes(self.session_id)
        for container_id in set(self.nodes) - set(running.values()):
            self.nodes.pop(container_id).cancel()
            _known.pop(container_id, None)
        for name, container_id in running.items():
            if container_id not in self.nodes:
                self.nodes[container_id] = asyncio.ensure_future(
                    self._watch_node(token, name, container_id)
                )

    async def _watch_node(self, token: str, name: str, container_id: str) -> None:
        while True:
            first = True  # said once even when unchanged: a viewer may just have come
            try:
                async for found in node_ports.watch_ports(container_id):
                    if first or _known.get(container_id) != found:
                        first = False
                        _known[container_id] = found
                        await events.publish(
                            self.session_id,
                            {
                                "type": "node.ports",
                                "name": name,
                                "ports": ports.port_list(token, name, found),
                            },
                        )
            except engine.NodeGone:
                return
            except engine.EngineError as exc:
                log.info("port watch of %s: %s; trying again", name, exc)
            await asyncio.sleep(RETRY)
