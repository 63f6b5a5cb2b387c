"""The warm pool as a web process uses it: take a ready node, or attach one ahead.

:func:`take` claims the oldest ready node and moves it onto the session network under
the node's name; :func:`prepare_soon` (after a session is created and after each add)
claims one for the session's next name and attaches it in the background, so an add of
that name hands it out with one inspect. The keeper (:mod:`sessions_app.keeper`) starts
the ready nodes and removes what went wrong. Database work runs through
``sync_to_async``; only engine calls run on the engine's thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, close_old_connections, transaction
from django.utils import timezone

from sessions_app import engine, quotas
from sessions_app.models import PoolNode, PoolNodeQuerySet, Session

if TYPE_CHECKING:
    from collections.abc import Coroutine

log = logging.getLogger(__name__)

T = TypeVar("T")

# Ready nodes a preparation leaves in the pool (with PWD_POOL_SIZE above 1) for adds of
# sessions that have none prepared: a burst of new sessions must not find the pool
# emptied by speculation.
PREPARE_RESERVE = 1
# How long an add waits for its node's preparation when that is already under way
# (an attach takes well under a second; waiting beats a second attach of the name).
PREPARE_WAIT = 10.0


def attach(container_id: str, session: Session, name: str) -> str:
    """Put a pool container on ``session``'s network as ``name``; returns its address.

    Blocking, engine calls only. Renamed for its session before it joins the network (see
    rename_container); renaming its host also starts the held-back login shell, under its
    final name, so the first prompt is right.
    """
    engine.rename_container(container_id, engine.container_name(session.short_id, name))
    ip = engine.connect_node(container_id, session.network_name, name)
    engine.rename_node_host(container_id, name)
    return ip


async def _discard(row: PoolNode) -> None:
    """Remove a pool container and its row (if still as read); failures are left to the
    keeper."""
    with contextlib.suppress(Exception):
        await engine.run(engine.remove_node, row.container_id)
    with contextlib.suppress(Exception):
        await _on_a_thread(row.drop)


async def _on_a_thread(func: Callable[[], T]) -> T:
    """Database work off Django's thread-sensitive executor: it may outlive the request,
    and in a server without per-request threads that executor may be the one blocked
    waiting for it. The thread's connection is closed afterwards."""

    def call() -> T:
        try:
            return func()
        finally:
            close_old_connections()

    return await sync_to_async(call, thread_sensitive=False)()


async def take(
    session: Session, node_name: str, image: str | None = None
) -> engine.NodeHandle | None:
    """A warm node of ``image`` moved onto ``session``'s network as ``node_name``, or None.

    None means "start one cold": the pool is off or empty, holds no node of ``image``
    (it holds PWD_NODE_IMAGE only), or the taken node failed to move (it is then
    removed). The caller must store the handle's container id in the node's row within
    the keeper's CLAIM_GRACE; that row is what keeps the container the node's.
    """
    image = image or settings.PWD_NODE_IMAGE
    if settings.PWD_POOL_SIZE <= 0 or not session.network_name:
        return None
    handle = await _take_prepared(session, node_name, image)
    if handle is not None:
        return handle
    row = await sync_to_async(PoolNode.objects.ready(image).claim)(PoolNode.Status.TAKEN)
    if row is None:
        return None
    try:
        ip = await engine.run(attach, row.container_id, session, node_name)
    except Exception:
        # Whatever went wrong, a cold start is the answer; this container is spoiled.
        log.warning("pool node %s could not be taken; starting one cold", row.container_id[:12])
        await _discard(row)
        return None
    log.info("took pool node %s as %s of %s", row.container_id[:12], node_name, session)
    return engine.NodeHandle(row.container_id, ip, {session.network_name: ip})


async def _take_prepared(session: Session, node_name: str, image: str) -> engine.NodeHandle | None:
    """The node prepared for ``session`` as ``node_name``, handed out; None when there is
    none (or it turned out unusable, and was removed).

    A preparation of this very name still under way is waited for, up to PREPARE_WAIT:
    falling back meanwhile would put a second ``node_name`` on the network. A prepared
    node of another name is left alone; it stays prepared for the add that gets it.
    """
    prepared = PoolNode.objects.prepared_for(session).filter(node_name=node_name, image=image)
    deadline = time.monotonic() + PREPARE_WAIT
    while True:
        row = await prepared.afirst()
        if row is None:
            return None
        if row.status == PoolNode.Status.PREPARED:
            break
        if time.monotonic() > deadline:
            log.warning("gave up waiting for pool node %s of %s", row.container_id[:12], session)
            await _discard(row)
            return None
        await asyncio.sleep(0.05)
    if not await sync_to_async(row.hand_out)():
        return None
    try:
        running = await engine.run(engine.container_status, row.container_id)
    except Exception:  # noqa: BLE001 - the cold start that follows reports the engine
        running = "unknown"
    if running != "running":
        log.warning(
            "prepared pool node %s is %s; starting one cold", row.container_id[:12], running
        )
        await _discard(row)
        return None
    log.info("handed out pool node %s as %s of %s", row.container_id[:12], node_name, session)
    return engine.NodeHandle(row.container_id, row.ip, {session.network_name: row.ip})


# --- attach ahead -------------------------------------------------------------------------

# Preparations under way in this process; a reference keeps each task alive to its end.
_background: set[asyncio.Task[object]] = set()


def prepare_enabled() -> bool:
    return settings.PWD_POOL_PREPARE and settings.PWD_POOL_SIZE > 0


async def prepare_soon(session: Session) -> None:
    """Start preparing a pool node for ``session``'s next add, in the background.

    Returns after one short transaction (the claim); the engine work runs in a task of
    its own that a client hanging up does not cancel. Does nothing when preparing is
    off, the session already has a prepared node or no free slot, the pool has no node
    to spare, or the installation is at PWD_MAX_TOTAL_NODES. Never raises.
    """
    if not prepare_enabled() or not session.network_name:
        return
    # Shielded: a claim once made is always followed by its preparation, even when the
    # caller is cancelled meanwhile (an add of that name would wait for it).
    await asyncio.shield(_in_background(_claim_then_prepare(session)))


async def wait_for_preparation(session_id: str) -> None:
    """Return once no pool node is being attached to the session's network (or after
    PREPARE_WAIT). Call after the session is ended, before removing its objects: a
    container removed while the engine attaches it leaves the swarm holding an
    attachment to the network, which can then never be removed."""
    preparing = _being_attached(session_id)
    deadline = time.monotonic() + PREPARE_WAIT
    while True:
        if not await preparing.aexists() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


def wait_for_preparation_sync(session_id: str) -> None:
    """:func:`wait_for_preparation` for synchronous callers (the reaper)."""
    preparing = _being_attached(session_id)
    deadline = time.monotonic() + PREPARE_WAIT
    while preparing.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _being_attached(session_id: str) -> PoolNodeQuerySet:
    return PoolNode.objects.prepared_for(session_id).filter(status=PoolNode.Status.PREPARING)


def pending() -> list[asyncio.Task[object]]:
    """The preparations still running in this process (tests and shutdown wait on them)."""
    return list(_background)


def _in_background(work: Coroutine[object, object, object]) -> asyncio.Task[object]:
    # A context of its own: the request's carries its per-request state (such as Django's
    # per-request sync thread, shut down once the response is sent).
    task = asyncio.get_running_loop().create_task(work, context=contextvars.Context())
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def _claim_then_prepare(session: Session) -> None:
    try:
        row = await _on_a_thread(lambda: claim_for_session(session.pk, timezone.now()))
    except Exception:
        log.exception("could not claim a pool node to prepare for %s", session)
        return
    if row is not None:
        _in_background(prepare(row, session))


def claim_for_session(session_id: str, now: datetime) -> PoolNode | None:
    """Claim a ready node to prepare for the session's lowest free name, or None.

    The name is chosen as an add chooses it (Session.objects.next_slot), so it is either
    reserved by an add first (and not chosen here) or claimed here first (and that add
    then finds this row and waits for it): the name is never on the network twice.
    """
    reserve = PREPARE_RESERVE if settings.PWD_POOL_SIZE > 1 else 0
    ready = PoolNode.objects.ready(settings.PWD_NODE_IMAGE)
    # Looked at first without the lock: under a burst the pool is empty and every
    # create and add would otherwise queue on a write transaction for nothing.
    if ready.count() <= reserve:
        return None
    with transaction.atomic():
        slot = Session.objects.next_slot(session_id, now)
        if slot is None or slot.name is None or not slot.session.network_name:
            return None
        if PoolNode.objects.prepared_for(slot.session).exists():
            return None
        if ready.count() <= reserve or not quotas.may_prepare_node():
            return None
        try:
            return ready.claim(
                PoolNode.Status.PREPARING, now, session=slot.session, node_name=slot.name
            )
        except IntegrityError:
            return None


async def prepare(row: PoolNode, session: Session) -> bool:
    """Attach the node claimed for ``session`` to its network as the row's name and mark
    it prepared; returns whether it is. On any failure, or when the claim was given up
    meanwhile (the session ended, an add stopped waiting), the node is removed."""
    container_id, name = row.container_id, row.node_name
    done = False
    try:
        ip = await engine.run(attach, container_id, session, name)
        done = await _on_a_thread(lambda: row.mark_prepared(ip))
    except Exception as exc:  # noqa: BLE001 - in the background: log, tidy, go on
        log.warning("could not prepare pool node %s: %s", container_id[:12], exc)
    if done:
        log.info("prepared pool node %s as %s of %s", container_id[:12], name, session)
        return True
    await _discard(row)
    return False
