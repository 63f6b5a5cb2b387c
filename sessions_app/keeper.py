"""The pool keeper (``manage.py pool``): the one owner of the warm pool's containers.

It keeps ``PWD_POOL_SIZE`` ready nodes (started on no network, ``pwd.role=pool``, a
placeholder name, their inner engine answering), attaches one ahead for sessions the web
process found no node to spare for, and removes what went wrong: pool containers no row
knows, rows whose container is gone, claims nobody finished.

A ``pwd.role=pool`` container's labels never change, so its row says whose it is. A
taken node's row stays for as long as a node row of an active session names the
container; once none does (the node was removed, its session ended) and the claim is
older than CLAIM_GRACE, the container and the row go. A node attached ahead goes with its
session (the session's clean-up removes it with the network; this covers what it
missed). The reaper leaves pool containers to the keeper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import close_old_connections
from django.db.models import Count, F
from django.utils import timezone

from metrics import tally
from sessions_app import engine, pool, pool_sizing
from sessions_app.models import Node, PoolNode, Session

log = logging.getLogger(__name__)

# Nodes started at once unless told: as many as the engine has CPUs, two at least (each
# start is CPU-heavy, an inner dockerd boots; see pool_sizing).
START_PARALLELISM = pool_sizing.MIN_PARALLELISM
# A claim older than this whose container no node row names was abandoned mid-take.
CLAIM_GRACE = timedelta(minutes=2)
# A pool container gets its row once its inner engine answers (within
# PWD_NODE_START_TIMEOUT); this much more, and a container with no row is an orphan.
START_MARGIN = timedelta(minutes=1)

Status = PoolNode.Status


def placeholder_name() -> str:
    """The host name a pool node has until a session takes it."""
    return f"pool-{secrets.token_hex(4)}"


def orphan_grace() -> timedelta:
    """How old a pool container with no row must be before it is removed: a younger one
    may be one a keeper is still starting."""
    return timedelta(seconds=settings.PWD_NODE_START_TIMEOUT) + START_MARGIN


class Keeper:
    """Keeps ``size`` ready nodes in the pool. Safe to run in several processes at once.

    Without an explicit ``size`` it sizes the pool to the rate of takes, from
    PWD_POOL_SIZE up (:class:`pool_sizing.PoolSizer`); ``parallelism`` defaults to the
    engine's CPUs (two at least).
    """

    def __init__(self, size: int | None = None, parallelism: int | None = None) -> None:
        self.sizer = pool_sizing.PoolSizer(
            settings.PWD_POOL_SIZE if size is None else size, fixed=size is not None
        )
        self._size = self.sizer.minimum
        self.parallelism = parallelism or pool_sizing.parallelism()
        self._executor = ThreadPoolExecutor(self.parallelism, thread_name_prefix="pwd-pool")
        self._starting: set[Future[bool]] = set()
        # Whether a pass waits for the starts it begins (run_forever's passes do not).
        self.waits = True

    @property
    def size(self) -> int:
        """Ready nodes to keep, as of the last pass (the sizer's target)."""
        return self._size

    @size.setter
    def size(self, value: int) -> None:
        self.sizer.minimum = self._size = value

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def run_once(self, wait: bool | None = None) -> int:
        """One pass: tidy up, then start nodes until ``size`` are ready or starting,
        ``parallelism`` at once (or, when they are ready, attach ahead for sessions
        that have none).

        With ``wait`` (default: ``self.waits``), returns once the starts are done, the
        number of nodes started; without, at once, the number of starts begun (they go on
        between passes). Raises EngineUnavailable when the engine does not answer.
        """
        wait = self.waits if wait is None else wait
        self._starting = {future for future in self._starting if not future.done()}
        self._size = self.sizer.target()
        self.reconcile()
        missing = self.size - PoolNode.objects.ready().count() - len(self._starting)
        if missing <= 0 and not self._starting:
            self.prepare_sessions()
            return 0
        room = self.parallelism - len(self._starting)
        futures = [self._executor.submit(self._start_one) for _ in range(min(missing, room))]
        self._starting.update(futures)
        if not wait:
            return len(futures)
        started = 0
        while self._starting:
            future = self._starting.pop()
            ok = False
            with contextlib.suppress(Exception):
                ok = bool(future.result())
            started += ok
            # A failed start is not retried in this pass (the next pass tries again).
            missing = self.size - PoolNode.objects.ready().count() - len(self._starting)
            if ok and missing > 0:
                self._starting.add(self._executor.submit(self._start_one))
        return started

    def run_forever(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Passes until ``stop`` is set; a failing pass is logged and retried. Node
        starts go on across passes (a pass does not wait for them)."""
        self.waits = False
        while not stop.is_set():
            try:
                self.run_once()
                tally.keeper_pass(ok=True)
            except engine.EngineError as exc:
                tally.keeper_pass(ok=False)
                log.warning("pool pass failed: %s", exc)
                stop.wait(5)
            except Exception:
                tally.keeper_pass(ok=False)
                log.exception("pool pass failed")
                stop.wait(5)
            finally:
                close_old_connections()
            stop.wait(interval)

    def prepare_sessions(self, now: datetime | None = None) -> int:
        """Attach ahead for active sessions that have no node prepared (the web process
        found no node to spare when it tried), newest first, ``parallelism`` at most.

        Called only while the pool is full, so it never competes with adds under
        pressure; what it claims is refilled on the next pass. Returns how many it
        prepared.
        """
        if not pool.prepare_enabled():
            return 0
        now = now or timezone.now()
        waiting = (
            Session.objects.active(now)
            .exclude(network_name="")
            .exclude(pk__in=PoolNode.objects.attached_ahead().values("session_id"))
            .annotate(node_count=Count("nodes"))
            .filter(node_count__lt=F("max_nodes"))
            .order_by("-created_at")
            .values_list("pk", flat=True)
        )
        claimed: list[PoolNode] = []
        for session_id in waiting[: self.parallelism * 4]:
            if len(claimed) == self.parallelism:
                break
            row = pool.claim_for_session(session_id, now)
            if row is not None:
                claimed.append(row)
        if not claimed:
            return 0
        return sum(asyncio.run(_prepare_all(claimed)))

    def _start_one(self) -> bool:
        hostname = placeholder_name()
        began = time.monotonic()
        try:
            handle = engine.create_node(
                None, hostname, None, role=engine.ROLE_POOL, name=engine.container_name(hostname)
            )
        except engine.EngineError as exc:
            log.warning("could not start a pool node: %s", exc)
            return False
        self.sizer.started(time.monotonic() - began)
        try:
            PoolNode.objects.create(container_id=handle.container_id, image=settings.PWD_NODE_IMAGE)
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
        active: set[str] = set()
        if any(row.session_id for row in rows):
            active = set(Session.objects.active(now).values_list("pk", flat=True))
        ready = []
        for row in rows:
            container = containers.get(row.container_id)
            if row.container_id in owned_by_nodes:
                # Taken: the container is its node's now; the row marks it as accounted for.
                continue
            if row.status in (Status.PREPARING, Status.PREPARED):
                self._reconcile_prepared(row, container, active, now)
            elif row.status != Status.READY:
                if row.claimed_at is None or row.claimed_at < now - CLAIM_GRACE:
                    # The node was removed, its session ended, or a take was abandoned.
                    self._remove(row, "no node has it")
            elif not _running(container):
                self._remove(row, "container gone")
            elif row.image != settings.PWD_NODE_IMAGE:
                self._retire(row, "another image")
            else:
                ready.append(row)
        # More ready nodes than wanted (the size went down, or two keepers raced): retire
        # the newest, so the oldest keep being taken first.
        surplus = max(0, len(ready) - self.size)
        for row in sorted(ready, key=lambda r: (r.created_at, r.pk))[len(ready) - surplus :]:
            self._retire(row, "more than the pool size")
        for container_id, container in containers.items():
            created = datetime.fromtimestamp(container.get("Created", 0), tz=UTC)
            if (
                container_id not in known
                and container_id not in owned_by_nodes
                and created < now - orphan_grace()
            ):
                log.info("removing pool container %s: no row has it", container_id[:12])
                engine.remove_node(container_id)

    def _reconcile_prepared(
        self, row: PoolNode, container: dict | None, active: set[str], now: datetime
    ) -> None:
        """A node attached ahead stays while its session is active and the node usable."""
        if (
            row.status == Status.PREPARING
            and row.claimed_at
            and row.claimed_at >= now - CLAIM_GRACE
        ):
            # Being attached: never removed mid-attach (the swarm then keeps the network's
            # attachment for good and the network cannot be removed); it ends soon.
            return
        if row.session_id not in active:
            why = "its session ended"
        elif row.status == Status.PREPARING:
            why = "its preparation was abandoned"
        elif not _running(container):
            why = "container gone"
        else:
            return
        # The row first, conditionally: an add may have taken the node since the listing.
        # A container left by a failed removal has no row then, and goes on a later pass.
        if row.drop():
            log.info("removing prepared pool node %s: %s", row.container_id[:12], why)
            engine.remove_node(row.container_id)

    def _retire(self, row: PoolNode, why: str) -> None:
        # Claimed first, so no web process takes it while it is being removed.
        if PoolNode.objects.filter(pk=row.pk).claim(Status.RETIRING) is not None:
            self._remove(row, why)

    @staticmethod
    def _remove(row: PoolNode, why: str) -> None:
        log.info("removing pool node %s: %s", row.container_id[:12], why)
        engine.remove_node(row.container_id)
        PoolNode.objects.filter(pk=row.pk).delete()


def _running(container: dict | None) -> bool:
    return container is not None and container.get("State") == "running"


async def _prepare_all(rows: list[PoolNode]) -> list[bool]:
    return list(await asyncio.gather(*(pool.prepare(row, row.session) for row in rows)))


def wait_until_ready(count: int, timeout: float) -> bool:
    """Whether ``count`` ready pool nodes exist within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if PoolNode.objects.ready().count() >= count:
            return True
        time.sleep(0.2)
    return False
