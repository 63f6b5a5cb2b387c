"""Hot sessions: the rules of a held session and its hand-out to a Start.

The keeper (:mod:`sessions_app.hot_keeper`) holds up to PWD_POOL_SESSIONS whole sessions
ready: a session row with ``held_at`` set and no client, its overlay network, and node1
running on it with its login shell waiting. A held session is not active
(:meth:`SessionQuerySet.active`), so the API, the terminals, the quotas and the reaper's
expiry leave it alone; the reaper keeps its objects on the engine (:func:`held`) and ends
one that broke (:func:`spoiled`). A Start takes the oldest ready one with a conditional
UPDATE (:func:`take`) that starts its clock and gives it the starter's client key.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from sessions_app import engine, quotas, services
from sessions_app.errors import TooManyRequests
from sessions_app.models import Node, Session

log = logging.getLogger(__name__)

# The node every held session has.
NODE = "node1"
# A held session whose node1 does not run this long after PWD_NODE_START_TIMEOUT was left
# by a keeper that died while making it.
MAKE_MARGIN = timedelta(minutes=1)
# Held sessions one Start tries (each found with its node1 not running is ended) before
# it falls back to a new session.
TAKE_ATTEMPTS = 3
# Conditional UPDATEs one claim tries when other Starts take the row it read first.
CLAIM_TRIES = 10


def held() -> QuerySet[Session]:
    """Sessions held for a Start: being made or ready, not ended, no client yet."""
    return Session.objects.filter(held_at__isnull=False, ended_at__isnull=True)


def ready() -> QuerySet[Session]:
    """Held sessions whose node1 runs: the ones a Start may take."""
    return held().filter(nodes__name=NODE, nodes__status=Node.Status.RUNNING)


def spoiled(now: datetime | None = None) -> QuerySet[Session]:
    """Held sessions that can never be handed out: node1 is gone, or it does not run
    PWD_NODE_START_TIMEOUT + MAKE_MARGIN after its keeper began the session."""
    now = now or timezone.now()
    nodes = Node.objects.filter(session=OuterRef("pk"))
    late = now - timedelta(seconds=settings.PWD_NODE_START_TIMEOUT) - MAKE_MARGIN
    return held().filter(
        Exists(nodes.filter(status=Node.Status.GONE))
        | (Q(held_at__lt=late) & ~Exists(nodes.filter(status=Node.Status.RUNNING)))
    )


def drop(session_id: str, now: datetime | None = None) -> bool:
    """End a held session, unless a Start took it meanwhile; whether it was ended here.

    Its objects are the caller's to remove (the keeper does at once); the reaper's
    clean-up of ended sessions finishes what is left.
    """
    return bool(held().filter(pk=session_id).update(ended_at=now or timezone.now()))


async def start(client_key: str) -> Session:
    """The session a Start on the landing page gets: a held one (:func:`take`), else a
    new empty one, as before hot sessions (``services.create_session``).

    Raises what ``services.create_session`` raises (TooManyRequests, EngineError).
    """
    return await take(client_key) or await services.create_session(client_key)


async def take(client_key: str) -> Session | None:
    """A held session handed to the client ``client_key``: its clock starts now.

    None when none is ready or PWD_POOL_SESSIONS is 0, and when its node1 would pass
    PWD_MAX_TOTAL_NODES or the client's node cap (a new session has no node yet). Raises
    TooManyRequests as a new session would: the same caps and the same rate per
    address. A held session whose node1 turns out not to run is ended, not counted
    against the client, and the next one is tried.
    """
    if settings.PWD_POOL_SESSIONS <= 0:
        return None
    for _ in range(TAKE_ATTEMPTS):
        claimed = await sync_to_async(_claim)(client_key, timezone.now())
        if claimed is None:
            return None
        session, container_id = claimed
        if await _running(container_id):
            # Its node2 is attached ahead by the keeper's next pass (prepare_sessions),
            # not here: that attach would compete with this page's load for the CPU.
            log.info("handed out held %s", session)
            return session
        log.warning("held %s had lost node1; trying another", session)
        await Session.objects.filter(pk=session.pk).aupdate(client_key="", ended_at=timezone.now())
    return None


def _claim(client_key: str, now: datetime) -> tuple[Session, str] | None:
    """Hand the oldest ready held session to ``client_key``; the session and its node1's
    container id, or None. The quota checks and the claim share one transaction, like a
    new session's checks and its insert."""
    with transaction.atomic():
        quotas.check_new_session(client_key, now)
        try:
            quotas.check_new_node(client_key)
        except TooManyRequests:
            return None
        changes = {
            "held_at": None,
            "created_at": now,
            "last_activity_at": now,
            "client_key": client_key,
        }
        for _ in range(CLAIM_TRIES):
            session = ready().order_by("held_at", "pk").first()
            if session is None:
                return None
            if held().filter(pk=session.pk).update(**changes):
                for name, value in changes.items():
                    setattr(session, name, value)
                node = session.nodes.get(name=NODE)
                session.nodes.update(created_at=now)
                return session, node.container_id
    return None


async def _running(container_id: str) -> bool:
    try:
        return await engine.run(engine.container_status, container_id) == "running"
    except engine.EngineError as exc:
        log.warning("could not look at a held node1: %s", exc)
        return False
