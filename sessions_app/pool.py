"""The warm pool: pre-started nodes that a session takes instead of waiting for a cold start.

Two halves share the ``PoolNode`` table:

- :class:`Keeper` (``manage.py pool``, its own process) keeps ``PWD_POOL_SIZE`` ready,
  unclaimed nodes: containers started on no network with ``pwd.role=pool`` and a
  placeholder name, whose inner engine already answers. It also removes what has gone
  wrong: pool containers no row knows, rows whose container is gone, abandoned claims.
- :func:`take` (the web process) claims the oldest ready row with a conditional UPDATE,
  moves its container onto the session network under the node's name and renames its
  host. Several web processes and keepers may share one pool.
- :func:`prepare_soon` (the web process, after a session is created and after each
  add) attaches ahead: it claims a ready row for the session's next node name and, in
  the background, does what :func:`take` would do. An add of exactly that name then
  hands the node out with no engine work but one inspect. At most one node per session
  is prepared, at most PWD_POOL_SIZE in all, and only while the pool has a node to spare.

Ownership of a ``pwd.role=pool`` container (labels never change after creation): its
``PoolNode`` row stays, claimed, for as long as a ``Node`` row of an active session
names the container, so a reaper that keeps pool containers with a row never removes a
taken node. Once none does (the node was removed, its session ended) and the claim is
older than CLAIM_GRACE, the keeper removes the container, if still there, and the row. A
prepared node's row names its session instead; it goes with the session (the
container is on the session network, the row is dropped when the session is cleaned,
and the keeper removes what an ended session's preparation left).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import Count, F
from django.utils import timezone

from sessions_app import engine, quotas
from sessions_app.models import Node, PoolNode, Session

if TYPE_CHECKING:
    from collections.abc import Coroutine

log = logging.getLogger(__name__)

# Nodes started at once: each start is CPU-heavy (an inner dockerd boots), and the web
# process's cold starts must not starve behind a refill on a small machine.
START_PARALLELISM = 2
# A pool container younger than this with no row may be one a keeper is still starting.
START_GRACE = timedelta(seconds=30)
# A claim older than this whose container no Node row has was abandoned mid-take.
CLAIM_GRACE = timedelta(minutes=2)
# Ready nodes a preparation leaves in the pool (with PWD_POOL_SIZE above 1) for adds of
# sessions that have none prepared: a burst of new sessions must not find the pool
# emptied by speculation.
PREPARE_RESERVE = 1
# How long an add waits for its node's preparation when that is already under way
# (an attach takes well under a second; waiting beats a second attach of the name).
PREPARE_WAIT = 10.0


def placeholder_name() -> str:
    """The host name a pool node has until a session takes it."""
    return f"pool-{secrets.token_hex(4)}"


# --- the web side ---------------------------------------------------------------------


def _claim(image: str, now: datetime, **fields: object) -> PoolNode | None:
    """Claim the oldest ready, unclaimed row of ``image``; None when there is none.

    The conditional UPDATE makes a row go to exactly one claimer across processes; a
    loser simply tries the next row. ``fields`` are written with the claim.
    """
    for _ in range(10):
        row = (
            PoolNode.objects.filter(claimed_at__isnull=True, ready_at__isnull=False, image=image)
            .order_by("created_at", "id")
            .first()
        )
        if row is None:
            return None
        if PoolNode.objects.filter(pk=row.pk, claimed_at__isnull=True).update(
            claimed_at=now, **fields
        ):
            row.claimed_at = now
            for name, value in fields.items():
                setattr(row, name, value)
            return row
    return None


def _drop(row: PoolNode) -> None:
    PoolNode.objects.filter(pk=row.pk).delete()


async def _discard(container_id: str, row_filter: dict[str, object]) -> None:
    """Remove a pool container and the row matching ``row_filter``; failures are left to
    the keeper and the reaper."""
    with contextlib.suppress(Exception):
        await engine.run(engine.remove_node, container_id)
    with contextlib.suppress(Exception):
        await PoolNode.objects.filter(**row_filter).adelete()


async def take(
    session: Session, node_name: str, image: str | None = None
) -> engine.NodeHandle | None:
    """A warm node of ``image`` moved onto ``session``'s network as ``node_name``, or None.

    None means "start one cold": the pool is off or empty, holds no node of ``image``
    (it holds PWD_NODE_IMAGE only), or the taken node failed to move (it is then
    removed). The caller must store the handle's container id in the node's row within
    CLAIM_GRACE; that row is what keeps the container the node's.
    """
    image = image or settings.PWD_NODE_IMAGE
    if settings.PWD_POOL_SIZE <= 0 or not session.network_name:
        return None
    handle = await _take_prepared(session, node_name, image)
    if handle is not None:
        return handle
    row = await sync_to_async(_claim)(image, timezone.now())
    if row is None:
        return None
    container_id = row.container_id
    try:
        # Named for its session before it joins the network (see rename_container).
        await engine.run(
            engine.rename_container,
            container_id,
            engine.container_name(session.short_id, node_name),
        )
        ip = await engine.run(engine.connect_node, container_id, session.network_name, node_name)
        await engine.run(engine.rename_node_host, container_id, node_name)
    except Exception:
        # Whatever went wrong, a cold start is the answer; this container is spoiled.
        log.warning("pool node %s could not be taken; starting one cold", container_id[:12])
        with contextlib.suppress(Exception):
            await engine.run(engine.remove_node, container_id)
        await sync_to_async(_drop)(row)
        return None
    log.info("took pool node %s as %s of %s", container_id[:12], node_name, session)
    return engine.NodeHandle(container_id, ip, {session.network_name: ip})


async def _take_prepared(session: Session, node_name: str, image: str) -> engine.NodeHandle | None:
    """The node prepared for ``session`` as ``node_name``, handed out; None when there is
    none (or it turned out unusable, and was removed).

    A preparation of this very name still under way is waited for, up to PREPARE_WAIT:
    falling back meanwhile would put a second ``node_name`` on the network. A prepared
    node of another name is left alone; it stays prepared for the add that gets it.
    """
    prepared = PoolNode.objects.filter(session=session, node_name=node_name, image=image)
    deadline = time.monotonic() + PREPARE_WAIT
    while True:
        row = await prepared.afirst()
        if row is None:
            return None
        if row.prepared_at is not None:
            break
        if time.monotonic() > deadline:
            log.warning("gave up waiting for pool node %s of %s", row.container_id[:12], session)
            await _discard(row.container_id, {"pk": row.pk, "prepared_at__isnull": True})
            return None
        await asyncio.sleep(0.05)
    # Handing out turns the row into an ordinary taken one (CLAIM_GRACE from now).
    if not await prepared.filter(pk=row.pk, prepared_at__isnull=False).aupdate(
        session=None, node_name="", claimed_at=timezone.now()
    ):
        return None
    try:
        running = await engine.run(engine.container_status, row.container_id)
    except Exception:  # noqa: BLE001 - the cold start that follows reports the engine
        running = "unknown"
    if running != "running":
        log.warning(
            "prepared pool node %s is %s; starting one cold", row.container_id[:12], running
        )
        await _discard(row.container_id, {"pk": row.pk})
        return None
    log.info("handed out pool node %s as %s of %s", row.container_id[:12], node_name, session)
    return engine.NodeHandle(row.container_id, row.ip, {session.network_name: row.ip})


# --- attach ahead -------------------------------------------------------------------------

# Preparations under way in this process; a reference keeps each task alive to its end.
_background: set[asyncio.Task[None]] = set()


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
    preparing = PoolNode.objects.filter(session_id=session_id, prepared_at__isnull=True)
    deadline = time.monotonic() + PREPARE_WAIT
    while True:
        if not await preparing.aexists() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


def wait_for_preparation_sync(session_id: str) -> None:
    """:func:`wait_for_preparation` for synchronous callers (the reaper)."""
    preparing = PoolNode.objects.filter(session_id=session_id, prepared_at__isnull=True)
    deadline = time.monotonic() + PREPARE_WAIT
    while preparing.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def pending() -> list[asyncio.Task[None]]:
    """The preparations still running in this process (tests and shutdown wait on them)."""
    return list(_background)


def _in_background(work: Coroutine[object, object, None]) -> asyncio.Task[None]:
    # A context of its own: the request's carries its per-request state (such as Django's
    # per-request sync thread, shut down once the response is sent).
    task = asyncio.get_running_loop().create_task(work, context=contextvars.Context())
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def _claim_then_prepare(session: Session) -> None:
    try:
        # Not on Django's thread-sensitive executor: this outlives the request, and in a
        # server without per-request threads that executor may be the one blocked in it.
        row = await sync_to_async(_claim_on_a_thread, thread_sensitive=False)(session.pk)
    except Exception:
        log.exception("could not claim a pool node to prepare for %s", session)
        return
    if row is not None:
        _in_background(_prepare(row, session))


def _claim_on_a_thread(session_id: str) -> PoolNode | None:
    try:
        return _claim_for_session(session_id, timezone.now())
    finally:
        close_old_connections()


def _claim_for_session(session_id: str, now: datetime) -> PoolNode | None:
    """Claim a ready row as prepared-to-be for the session's lowest free name, or None.

    The session row is locked as in services._reserve_slot, so a name is either reserved
    by an add first (and not chosen here) or claimed here first (and that add then finds
    this row and waits for it): the name is never on the network twice.
    """
    reserve = PREPARE_RESERVE if settings.PWD_POOL_SIZE > 1 else 0
    image = settings.PWD_NODE_IMAGE
    ready = PoolNode.objects.filter(claimed_at__isnull=True, ready_at__isnull=False, image=image)
    # Looked at first without the lock: under a burst the pool is empty and every
    # create and add would otherwise queue on a write transaction for nothing.
    if ready.count() <= reserve:
        return None
    with transaction.atomic():
        session = Session.objects.select_for_update().active(now).filter(pk=session_id).first()
        if session is None or not session.network_name:
            return None
        if PoolNode.objects.filter(session=session).exists():
            return None
        taken = set(session.nodes.values_list("name", flat=True))
        name = Node.free_name(taken, session.max_nodes)
        if name is None:
            return None
        if ready.count() <= reserve or not quotas.may_prepare_node():
            return None
        try:
            return _claim(image, now, session=session, node_name=name)
        except IntegrityError:
            return None


async def _prepare(row: PoolNode, session: Session) -> None:
    await engine.run(attach_ahead, row, session)


def attach_ahead(row: PoolNode, session: Session) -> bool:
    """Attach the node claimed for ``session`` to its network as the row's name, rename its
    host and mark it prepared. On any failure, or when the claim was given up meanwhile
    (the session ended, an add stopped waiting), remove it. Blocking; returns whether the
    node is prepared."""
    container_id, name = row.container_id, row.node_name
    done = 0
    try:
        engine.rename_container(container_id, engine.container_name(session.short_id, name))
        ip = engine.connect_node(container_id, session.network_name, name)
        # This also starts the held-back login shell, under its final name: a prepared
        # node is only ever handed out as ``name``, so the first prompt stays right.
        engine.rename_node_host(container_id, name)
        done = PoolNode.objects.filter(
            pk=row.pk, session_id=session.pk, prepared_at__isnull=True
        ).update(prepared_at=timezone.now(), ip=ip)
    except Exception as exc:  # noqa: BLE001 - in the background: log, tidy, go on
        log.warning("could not prepare pool node %s: %s", container_id[:12], exc)
    try:
        if done:
            log.info("prepared pool node %s as %s of %s", container_id[:12], name, session)
            return True
        with contextlib.suppress(Exception):
            engine.remove_node(container_id)
        with contextlib.suppress(Exception):
            PoolNode.objects.filter(pk=row.pk, prepared_at__isnull=True).delete()
        return False
    finally:
        # Runs on an engine or keeper thread: its connection is not needed afterwards.
        close_old_connections()


# --- the keeper -------------------------------------------------------------------------


class Keeper:
    """Keeps ``size`` ready nodes in the pool. Safe to run in several processes at once."""

    def __init__(self, size: int | None = None, parallelism: int = START_PARALLELISM) -> None:
        self.size = settings.PWD_POOL_SIZE if size is None else size
        self.parallelism = parallelism
        self._executor = ThreadPoolExecutor(parallelism, thread_name_prefix="pwd-pool")

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def run_once(self) -> int:
        """One pass: tidy up, then start nodes until ``size`` are ready.

        Returns the number of nodes started. Raises EngineUnavailable when the engine
        does not answer.
        """
        self.reconcile()
        missing = self.size - PoolNode.objects.filter(claimed_at__isnull=True).count()
        if missing <= 0:
            self.prepare_sessions()
            return 0
        futures = [self._executor.submit(self._start_one) for _ in range(missing)]
        started = 0
        for future in futures:
            with contextlib.suppress(Exception):
                started += bool(future.result())
        return started

    def run_forever(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Passes until ``stop`` is set; a failing pass is logged and retried."""
        while not stop.is_set():
            try:
                self.run_once()
            except engine.EngineError as exc:
                log.warning("pool pass failed: %s", exc)
                stop.wait(5)
            except Exception:
                log.exception("pool pass failed")
                stop.wait(5)
            finally:
                close_old_connections()
            stop.wait(interval)

    def prepare_sessions(self, now: datetime | None = None) -> int:
        """Attach ahead for active sessions that have no node prepared (the web process
        found no node to spare when it tried), newest first, one per start slot.

        Called only while the pool is full, so it never competes with adds under
        pressure; what it claims is refilled on the next pass. Returns how many it
        prepared.
        """
        if not prepare_enabled():
            return 0
        now = now or timezone.now()
        waiting = (
            Session.objects.active(now)
            .exclude(network_name="")
            .exclude(pk__in=PoolNode.objects.filter(session__isnull=False).values("session_id"))
            .annotate(node_count=Count("nodes"))
            .filter(node_count__lt=F("max_nodes"))
            .order_by("-created_at")
            .values_list("pk", flat=True)
        )
        claimed = []
        for session_id in waiting[: self.parallelism * 4]:
            if len(claimed) == self.parallelism:
                break
            row = _claim_for_session(session_id, now)
            if row is not None:
                claimed.append(row)
        futures = [self._executor.submit(attach_ahead, row, row.session) for row in claimed]
        return sum(bool(future.result()) for future in futures)

    def _start_one(self) -> bool:
        hostname = placeholder_name()
        try:
            handle = engine.create_node(
                None,
                hostname,
                None,
                role=engine.ROLE_POOL,
                name=engine.container_name(hostname),
            )
        except engine.EngineError as exc:
            log.warning("could not start a pool node: %s", exc)
            return False
        try:
            PoolNode.objects.create(
                container_id=handle.container_id,
                image=settings.PWD_NODE_IMAGE,
                ready_at=timezone.now(),
            )
        except Exception:
            engine.remove_node(handle.container_id)
            raise
        finally:
            close_old_connections()
        log.info("pool node %s is ready", handle.container_id[:12])
        return True

    def reconcile(self, now: datetime | None = None) -> None:
        """Bring the rows and the engine's pool containers back in line."""
        now = now or timezone.now()
        # Rows first: a row is only written once its container runs, so every row read
        # here has a container in the listing below unless it really is gone.
        rows = list(PoolNode.objects.all())
        containers = {
            c["Id"]: c
            for c in engine.list_objects().containers
            if (c.get("Labels") or {}).get(engine.LABEL_ROLE) == engine.ROLE_POOL
        }
        known = {row.container_id for row in rows}
        # Only a node of an active session keeps its container: the node rows of an ended
        # session outlive a clean-up that was cut short (a reaper that died mid-way).
        owned_by_nodes = set(
            Node.objects.filter(
                container_id__in=[*containers, *known], session__in=Session.objects.active(now)
            ).values_list("container_id", flat=True)
        )
        active = set()
        if any(row.session_id for row in rows):
            active = set(Session.objects.active(now).values_list("pk", flat=True))
        unclaimed = []
        for row in rows:
            container = containers.get(row.container_id)
            if row.container_id in owned_by_nodes:
                # Taken: the container is its node's now; the row marks it as accounted for.
                continue
            if row.session_id is not None:
                self._reconcile_prepared(row, container, active, now)
            elif row.claimed_at is not None:
                if row.claimed_at < now - CLAIM_GRACE:
                    # The node was removed, its session ended, or a take was abandoned.
                    log.info("removing pool node %s: no node has it", row.container_id[:12])
                    engine.remove_node(row.container_id)
                    _drop(row)
            elif container is None or container.get("State") != "running":
                log.info("removing pool node %s: container gone", row.container_id[:12])
                engine.remove_node(row.container_id)
                _drop(row)
            elif row.image != settings.PWD_NODE_IMAGE:
                self._retire(row, "another image")
            else:
                unclaimed.append(row)
        # More ready nodes than wanted (the size went down, or two keepers raced): retire
        # the newest, so the oldest keep being taken first.
        surplus = len(unclaimed) - self.size
        for row in sorted(unclaimed, key=lambda r: (r.created_at, r.pk))[
            len(unclaimed) - max(0, surplus) :
        ]:
            self._retire(row, "more than the pool size")
        for container_id, container in containers.items():
            created = datetime.fromtimestamp(container.get("Created", 0), tz=UTC)
            if (
                container_id not in known
                and container_id not in owned_by_nodes
                and created < now - START_GRACE
            ):
                log.info("removing pool container %s: no row has it", container_id[:12])
                engine.remove_node(container_id)

    def _reconcile_prepared(
        self, row: PoolNode, container: dict | None, active: set[str], now: datetime
    ) -> None:
        """A node prepared for a session stays while the session is active and the node
        usable; the row goes when the session ended (the session's clean-up removes the
        container with its network; this covers what that missed)."""
        if row.prepared_at is None and row.claimed_at and row.claimed_at >= now - CLAIM_GRACE:
            # Being attached: never removed mid-attach (the swarm then keeps the network's
            # attachment for good and the network cannot be removed); it ends soon.
            return
        if row.session_id not in active:
            why = "its session ended"
        elif row.prepared_at is None:
            why = "its preparation was abandoned"
        elif container is None or container.get("State") != "running":
            why = "container gone"
        else:
            return
        # The row first, conditionally: an add may have taken the node since the listing.
        # A container left by a failed removal has no row then, and goes on a later pass.
        deleted, _ = PoolNode.objects.filter(
            pk=row.pk, session_id=row.session_id, prepared_at=row.prepared_at
        ).delete()
        if deleted:
            log.info("removing prepared pool node %s: %s", row.container_id[:12], why)
            engine.remove_node(row.container_id)

    def _retire(self, row: PoolNode, why: str) -> None:
        # Claim it first, so no web process takes it while it is being removed.
        if PoolNode.objects.filter(pk=row.pk, claimed_at__isnull=True).update(
            claimed_at=timezone.now()
        ):
            log.info("removing pool node %s: %s", row.container_id[:12], why)
            engine.remove_node(row.container_id)
            _drop(row)


def wait_until_ready(count: int, timeout: float) -> bool:
    """Whether ``count`` ready, unclaimed pool nodes exist within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            PoolNode.objects.filter(claimed_at__isnull=True, ready_at__isnull=False).count()
            >= count
        ):
            return True
        time.sleep(0.2)
    return False
