"""Live CPU and memory of the nodes of watched sessions, for this process's viewers.

While at least one events websocket of a session is open in this process, each running
node of it has one stats reader (one engine connection, :mod:`sessions_app.engine.stats`)
and its viewers get ``node.stats`` every PWD_STATS_INTERVAL; when the last viewer leaves
the readers stop, so an unwatched node costs the engine nothing. The events are sent to
this process's viewers directly, not through the channel layer: every process that has
viewers reads for its own, and nobody hears a sample twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

from sessions_app import engine, services
from sessions_app.engine import stats as engine_stats
from sessions_app.models import Node

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]

# The node list is re-read this often even when no node event says it changed (an event
# lost while the channel layer was down, a stream the engine ended).
RESYNC_SECONDS = 30.0
# The events that change which nodes run (their viewers pass them on with nodes_changed).
NODE_EVENTS = frozenset({"node.added", "node.removed", "node.gone"})


class _Watched:
    """One watched session: its viewers, a reader per running node, and the task that
    keeps the readers in step with the node list."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.viewers: dict[str, Send] = {}
        self.readers: dict[str, asyncio.Task[None]] = {}  # container id -> its reader
        self.changed = asyncio.Event()
        self.keeper = asyncio.create_task(self._keep(), name=f"stats {session_id[:6]}")

    async def _keep(self) -> None:
        while True:
            try:
                await self._sync()
            except Exception:  # noqa: BLE001 - a database hiccup; try again later
                log.warning("stats of session %s: could not read its nodes", self.session_id[:6])
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), RESYNC_SECONDS)

    async def _sync(self) -> None:
        running = {
            node.container_id: node
            async for node in Node.objects.filter(
                session_id=self.session_id, status=Node.Status.RUNNING
            ).exclude(container_id="")
        }
        for container_id in list(self.readers):
            if container_id not in running or self.readers[container_id].done():
                self.readers.pop(container_id).cancel()
        for container_id, node in running.items():
            if container_id not in self.readers:
                self.readers[container_id] = asyncio.create_task(
                    self._read(node), name=f"stats {self.session_id[:6]} {node.name}"
                )

    async def _read(self, node: Node) -> None:
        """Send the node's CPU and memory every interval until cancelled or the stream ends
        (a later sync starts it again if the node still runs)."""
        try:
            stream = await engine_stats.open_stats(node.container_id)
        except engine.NodeGone:
            await services.mark_gone(node)
            return
        except engine.EngineError as exc:
            log.info("stats of %s: %s", node, exc)
            return
        loop = asyncio.get_running_loop()
        try:
            previous, sent_at = None, float("-inf")
            while (sample := await stream.next()) is not None:
                if previous is not None and loop.time() - sent_at < settings.PWD_STATS_INTERVAL:
                    continue
                if previous is not None:
                    sent_at = loop.time()
                    await self.broadcast(node_stats(node.name, previous, sample))
                previous = sample
        except (engine.EngineError, TimeoutError, ValueError) as exc:
            log.info("stats of %s ended: %s", node, exc)
        finally:
            await stream.close()
        # The engine ended the stream: the container went away or stopped. Look again
        # soon (a removed one is then marked gone), but never in a tight loop.
        await asyncio.sleep(1)
        self.changed.set()

    async def broadcast(self, event: dict[str, Any]) -> None:
        for send in list(self.viewers.values()):
            with contextlib.suppress(Exception):  # a viewer going away is its own business
                await send(event)

    def stop(self) -> None:
        self.keeper.cancel()
        for reader in self.readers.values():
            reader.cancel()
        self.readers.clear()


def node_stats(
    name: str, before: engine_stats.Sample, after: engine_stats.Sample
) -> dict[str, Any]:
    """The ``node.stats`` event for the time between two samples of node ``name``."""
    return {
        "type": "node.stats",
        "name": name,
        "cpu_percent": round(engine_stats.cpu_percent(before, after), 1),
        "memory_bytes": after.memory_bytes,
        "memory_limit_bytes": after.memory_limit_bytes,
    }


_watched: dict[str, _Watched] = {}


def watch(session_id: str, viewer: str, send: Send) -> None:
    """Start sending ``node.stats`` of the session to ``send`` (``viewer`` names it, e.g.
    the consumer's channel). The session's first viewer starts its readers."""
    watched = _watched.get(session_id)
    if watched is None:
        watched = _watched[session_id] = _Watched(session_id)
    watched.viewers[viewer] = send


def unwatch(session_id: str, viewer: str) -> None:
    """Stop sending to ``viewer``; after the session's last viewer its readers stop."""
    watched = _watched.get(session_id)
    if watched is None:
        return
    watched.viewers.pop(viewer, None)
    if not watched.viewers:
        del _watched[session_id]
        watched.stop()


def nodes_changed(session_id: str) -> None:
    """A node of the session was added, removed or lost: read the node list again now."""
    watched = _watched.get(session_id)
    if watched is not None:
        watched.changed.set()


def reading() -> dict[str, set[str]]:
    """The container ids read now, by session id (for tests, the bench and operators)."""
    return {
        session_id: {cid for cid, task in watched.readers.items() if not task.done()}
        for session_id, watched in _watched.items()
    }
