"""Orchestration of sessions and nodes: what the API views (and the reaper) call.

Views stay thin: they parse and validate, call one function here, and render. Engine
calls go through :mod:`sessions_app.engine` on its thread pool; the ORM through
its async API. Node acquisition is a single function, :func:`acquire_node`, so a warm
pool can be plugged in there without touching the rest.
"""

import asyncio
import logging
import math
from collections.abc import Awaitable
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from metrics import tally
from sessions_app import engine, events, pool, quotas, removals
from sessions_app.engine import ExecResult, NodeHandle
from sessions_app.errors import BadRequest, Conflict, NotFound, TooManyRequests
from sessions_app.errors import NodeGone as ApiNodeGone
from sessions_app.models import Node, Session
from sessions_app.serialize import node_data
from sessions_app.turns import Turns

log = logging.getLogger(__name__)

SESSION_NOT_FOUND = "There is no such session, or it has ended."
# Execs of one session waiting for a turn (PWD_EXEC_PER_SESSION run at once); past this
# an exec is refused, so a client cannot park any number of requests on the server.
EXEC_WAITING_MAX = 64
EXEC_RETRY_AFTER = 5

_exec_turns = Turns()
T = TypeVar("T")


# --- sessions ---------------------------------------------------------------------------


async def create_session(client_key: str = "") -> Session:
    """Create a session and its overlay network; nothing is left behind on failure.

    Raises TooManyRequests when the installation is at PWD_MAX_SESSIONS or the client
    (``client_key``, see :mod:`sessions_app.quotas`; empty: not counted) has started
    PWD_SESSIONS_PER_IP sessions.

    The row comes first: the reaper removes a labelled network whose session the
    database does not know, so the network must never exist before its row.
    """
    session = await sync_to_async(_admit_session)(client_key)
    try:
        name, network_id = await engine.run(engine.create_session_network, session.id)
    except BaseException:
        await Session.objects.filter(pk=session.pk).adelete()
        await _remove_quietly(session.id)
        raise
    session.network_name, session.network_id = name, network_id
    await session.asave(update_fields=["network_name", "network_id"])
    # Attach a pool node ahead of the first add, in the background.
    await pool.prepare_soon(session)
    return session


def _admit_session(client_key: str) -> Session:
    with transaction.atomic():
        quotas.check_new_session(client_key, timezone.now())
        return Session.objects.create(max_nodes=settings.PWD_MAX_NODES, client_key=client_key)


async def active_session(session_id: str) -> Session:
    """The session if it is active, recording the call as activity; else NotFound."""
    try:
        session = await Session.objects.active().aget(pk=session_id)
    except Session.DoesNotExist:
        raise NotFound(SESSION_NOT_FOUND, "session_not_found") from None
    await sync_to_async(session.touch)()
    return session


async def session_nodes(session: Session) -> list[Node]:
    return [node async for node in session.nodes.all()]


async def end_session(session: Session, reason: str = "deleted") -> bool:
    """End the session at once (the API answers 404 for it and viewers hear
    ``session.ended``), then remove its nodes, volumes and network in the background.

    Waits up to PWD_REMOVAL_WAIT seconds for that removal and returns whether it finished;
    one that did not goes on until the engine lets go (the reaper finishes it if this
    process dies). Never raises for the engine.
    """
    if await sync_to_async(session.end)():
        await events.publish(session.id, {"type": "session.ended", "reason": reason})
    return await removals.wait(removals.clean_session(session.id), settings.PWD_REMOVAL_WAIT)


async def _remove_quietly(session_id: str) -> None:
    try:
        await engine.run(engine.remove_session_objects, session_id)
    except engine.EngineError:
        log.warning("could not remove what session %s left; the reaper will", session_id[:6])


# --- nodes ------------------------------------------------------------------------------


async def acquire_node(session: Session, name: str, image: str) -> NodeHandle:
    """A running node called ``name`` on the session's network, its inner engine up.

    The one place nodes come from: a warm node from the pool when there is one, else
    a cold start. On failure nothing of the node is left on the engine and an
    EngineError is raised.
    """
    handle = await pool.take(session, name, image)
    if handle is not None:
        return handle
    return await engine.run(
        engine.create_node,
        session.id,
        name,
        session.network_name,
        image,
        name=engine.container_name(session.short_id, name),
    )


def allowed_image(image: object) -> str:
    """The image to start, defaulting to PWD_NODE_IMAGE; BadRequest when not allowed."""
    if image is None:
        return settings.PWD_NODE_IMAGE
    if not isinstance(image, str) or image not in settings.PWD_NODE_IMAGES:
        allowed = ", ".join(settings.PWD_NODE_IMAGES)
        raise BadRequest(f"That image is not allowed here; use one of: {allowed}.", "bad_image")
    return image


def _reserve_slot(session_id: str, image: str) -> Node:
    """Insert the node row (status starting) under the lowest free name, or raise.

    The name is chosen as an attach ahead chooses it (Session.objects.next_slot), so two
    adds, or an add and an attach ahead, never pick the same one.
    """
    with transaction.atomic():
        slot = Session.objects.next_slot(session_id)
        if slot is None:
            raise NotFound(SESSION_NOT_FOUND, "session_not_found")
        session, name = slot
        if name is None:
            raise Conflict(
                f"This session already has its {session.max_nodes} nodes; remove one first.",
                "node_limit_reached",
            )
        quotas.check_new_node(session.client_key)
        try:
            return Node.objects.create(session=session, name=name, hostname=name, image=image)
        except IntegrityError:
            raise Conflict(
                "Another node is being added; try again.", "node_limit_reached"
            ) from None


@tally.times_node_adds
async def add_node(session: Session, image: str) -> Node:
    """Reserve a slot, start the node outside any transaction, then record it.

    Shielded from cancellation: a client that hangs up does not leave a half-made node;
    the node is finished (and announced) or removed.
    """
    node = await sync_to_async(_reserve_slot)(session.pk, image)
    node = await asyncio.shield(_start_reserved(session, node))
    # Attach a pool node ahead of the next add, in the background.
    await pool.prepare_soon(session)
    return node


async def _start_reserved(session: Session, node: Node) -> Node:
    try:
        handle = await acquire_node(session, node.name, node.image)
    except BaseException:
        await Node.objects.filter(pk=node.pk).adelete()
        raise
    node.status, node.container_id, node.ip = Node.Status.RUNNING, handle.container_id, handle.ip
    updated = await Node.objects.filter(pk=node.pk, status=Node.Status.STARTING).aupdate(
        status=node.status, container_id=node.container_id, ip=node.ip
    )
    # The session may have ended while the node started; its clean-up may have run
    # before this container existed, so this side removes it.
    if not updated or not await Session.objects.active().filter(pk=session.pk).aexists():
        await engine.run(engine.remove_node, handle.container_id)
        await Node.objects.filter(pk=node.pk).adelete()
        raise NotFound(SESSION_NOT_FOUND, "session_not_found")
    await events.publish(session.id, {"type": "node.added", "node": node_data(node)})
    return node


async def get_node(session: Session, name: str) -> Node:
    try:
        return await session.nodes.aget(name=name)
    except Node.DoesNotExist:
        raise NotFound(f"This session has no node called {name}.", "node_not_found") from None


def _gone(node: Node) -> ApiNodeGone:
    return ApiNodeGone(
        f"{node.name} is gone: its container was removed. Remove it and add another.",
    )


async def running_node(session: Session, name: str) -> Node:
    """The session's node ``name``, when it runs: 404 without such a node, 410 when it
    is gone, 409 while it starts."""
    node = await get_node(session, name)
    if node.status == Node.Status.GONE:
        raise _gone(node)
    if node.status != Node.Status.RUNNING:
        raise Conflict(f"{name} is {node.status}, not running.", "node_not_running")
    return node


async def mark_gone(node: Node) -> bool:
    """Record that the engine lost ``node``; viewers hear ``node.gone`` once, whoever
    (the reaper, an exec, a terminal) noticed first. Returns False when already marked."""
    if not await sync_to_async(node.mark_gone)():
        return False
    await events.publish(node.session_id, {"type": "node.gone", "name": node.name})
    return True


async def on_node(node: Node, call: Awaitable[T]) -> T:
    """Await an engine ``call`` on ``node``; when the node turns out to be gone it is
    marked so and the API answers 410 ``node_gone``."""
    try:
        return await call
    except engine.NodeGone:
        await mark_gone(node)
        raise _gone(node) from None


async def remove_node(session: Session, name: str) -> bool:
    """Remove the node at once (its row goes, viewers hear ``node.removed``), then its
    container and volume in the background; waits up to PWD_REMOVAL_WAIT seconds for
    them and returns whether they went. A container left by a process that died is the
    reaper's (no node row names it). Conflict while the node starts."""
    node = await get_node(session, name)
    if node.status == Node.Status.STARTING:
        raise Conflict(f"{name} is still starting; try again in a moment.", "node_starting")
    deleted, _ = await Node.objects.filter(pk=node.pk).adelete()
    if deleted:
        await events.publish(session.id, {"type": "node.removed", "name": name})
    if not node.container_id:
        return True
    return await removals.wait(
        removals.remove_container(node.container_id), settings.PWD_REMOVAL_WAIT
    )


async def exec_in_node(
    session: Session, name: str, command: list[str], time_limit: float
) -> ExecResult:
    """Run ``command`` in the node, ended in the node after ``time_limit`` seconds.

    The session runs at most PWD_EXEC_PER_SESSION commands at once in this process;
    further ones wait for a turn (the time limit starts when the command does), and past
    EXEC_WAITING_MAX waiting the call raises TooManyRequests.
    """
    node = await running_node(session, name)
    limit = settings.PWD_EXEC_PER_SESSION
    if _exec_turns.running(session.pk) >= limit and (
        _exec_turns.waiting(session.pk) >= EXEC_WAITING_MAX
    ):
        raise TooManyRequests(
            f"This session already has {limit} commands running and "
            f"{EXEC_WAITING_MAX} waiting; wait for some to finish.",
            "too_many_execs",
            retry_after=EXEC_RETRY_AFTER,
        )
    return await on_node(
        node,
        _exec_turns.run(
            session.pk,
            limit,
            lambda: engine.run_exec(
                engine.exec_in_node,
                node.container_id,
                command,
                math.ceil(time_limit),
                settings.PWD_EXEC_MAX_OUTPUT,
            ),
        ),
    )
