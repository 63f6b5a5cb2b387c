"""Removals that outlast the request: what an ended session or a removed node leaves on
the engine, removed in the background of the web process until the engine lets go.

The caller has already ended the session (or deleted the node row) and announced it, so
nobody sees the session or node any more; what is left is engine work that may take a
while (a swarm under load keeps a removed container's attachment to an overlay network
for many seconds). A removal here retries for RETRY_FOR, then leaves the rest to the
reaper (``clean_ended`` for a session whose cleaned_at is still NULL, ``reconcile`` for a
container no node row names), which also covers a web process that dies meanwhile.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine

from asgiref.sync import sync_to_async
from django.utils import timezone

from sessions_app import engine, pool
from sessions_app.models import Node, PoolNode, Session

log = logging.getLogger(__name__)

# How long the web process keeps at one removal before leaving it to the reaper.
RETRY_FOR = 120.0
RETRY_DELAY_MAX = 5.0

_running: dict[str, asyncio.Task[None]] = {}


def mark_cleaned(session_id: str) -> None:
    """Record that an ended session has nothing left on the engine; drop its node rows
    and the row of a pool node prepared for it (the container went with the network)."""
    Node.objects.filter(session_id=session_id).delete()
    PoolNode.objects.prepared_for(session_id).delete()
    Session.objects.filter(pk=session_id, cleaned_at__isnull=True).update(cleaned_at=timezone.now())


async def _until_done(remove: Callable[[], Awaitable[None]], what: str) -> None:
    """Await ``remove()`` until it succeeds; an EngineError (slow to let go, engine
    away) is retried with a growing delay for RETRY_FOR seconds, then raised."""
    deadline = time.monotonic() + RETRY_FOR
    delay = 0.5
    while True:
        try:
            await remove()
            return
        except engine.EngineError as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.info("removing %s: %s; trying again in %.1f s", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_DELAY_MAX)


async def _clean_session(session_id: str) -> None:
    # A pool node being attached ahead finishes first (see pool.wait_for_preparation).
    await pool.wait_for_preparation(session_id)
    await _until_done(
        lambda: engine.run(engine.remove_session_objects, session_id),
        f"session {session_id[:6]}",
    )
    await sync_to_async(mark_cleaned)(session_id)


async def _remove_container(container_id: str) -> None:
    await _until_done(
        lambda: engine.run(engine.remove_node, container_id), f"container {container_id[:12]}"
    )


def clean_session(session_id: str) -> asyncio.Task[None]:
    """Start removing an ended session's containers, volumes and network (one removal
    per session at a time: a second call gets the first one's task)."""
    return _start(f"session:{session_id}", lambda: _clean_session(session_id))


def remove_container(container_id: str) -> asyncio.Task[None]:
    """Start removing a node's container, volumes and disk (its row is already gone)."""
    return _start(f"container:{container_id}", lambda: _remove_container(container_id))


async def wait(task: asyncio.Task[None], seconds: float) -> bool:
    """Wait up to ``seconds`` for a removal; whether it finished by then. A
    removal that failed counts as not finished (it is logged; the reaper goes on)."""
    if seconds <= 0:
        return task.done() and not task.cancelled() and task.exception() is None
    done, _ = await asyncio.wait([task], timeout=seconds)
    return bool(done) and not task.cancelled() and task.exception() is None


def pending() -> list[asyncio.Task[None]]:
    """The removals still running in this process (tests and shutdown wait on them)."""
    return list(_running.values())


def _start(key: str, work: Callable[[], Coroutine[object, object, None]]) -> asyncio.Task[None]:
    task = _running.get(key)
    if task is not None and not task.done():
        return task
    # A context of its own: the request's carries per-request state (Django's per-request
    # sync thread, shut down once the response is sent); the task outlives the request.
    task = asyncio.get_running_loop().create_task(work(), context=contextvars.Context())
    _running[key] = task
    task.add_done_callback(lambda done: _finished(key, done))
    return task


def _finished(key: str, task: asyncio.Task[None]) -> None:
    if _running.get(key) is task:
        del _running[key]
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.warning("left the removal of %s to the reaper: %s", key.split(":")[0], exc)
