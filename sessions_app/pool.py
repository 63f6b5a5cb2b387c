"""The warm pool: pre-started nodes that a session takes instead of waiting for a cold start.

Two halves share the ``PoolNode`` table:

- :class:`Keeper` (``manage.py pool``, its own process) keeps ``PWD_POOL_SIZE`` ready,
  unclaimed nodes: containers started on no network with ``pwd.role=pool`` and a
  placeholder name, whose inner engine already answers. It also removes what has gone
  wrong: pool containers no row knows, rows whose container is gone, abandoned claims.
- :func:`take` (the web process) claims the oldest ready row with a conditional UPDATE,
  moves its container onto the session network under the node's name and renames its
  host. Several web processes and keepers may share one pool.

Ownership of a ``pwd.role=pool`` container (labels never change after creation): its
``PoolNode`` row stays, claimed, for as long as a ``Node`` row names the container, so
a reaper that keeps pool containers with a row never removes a taken node. Once no
``Node`` row names it (the node or its session was removed) and the claim is older
than CLAIM_GRACE, the keeper removes the container, if still there, and the row.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from sessions_app import provisioning
from sessions_app.models import Node, PoolNode

if TYPE_CHECKING:
    from sessions_app.models import Session

log = logging.getLogger(__name__)

# Nodes started at once: each start is CPU-heavy (an inner dockerd boots), and the web
# process's cold starts must not starve behind a refill on a small machine.
START_PARALLELISM = 2
# A pool container younger than this with no row may be one a keeper is still starting.
START_GRACE = timedelta(seconds=30)
# A claim older than this whose container no Node row has was abandoned mid-take.
CLAIM_GRACE = timedelta(minutes=2)


def placeholder_name() -> str:
    """The host name a pool node has until a session takes it."""
    return f"pool-{secrets.token_hex(4)}"


# --- the web side ---------------------------------------------------------------------


def _claim(image: str, now: datetime) -> PoolNode | None:
    """Claim the oldest ready, unclaimed row of ``image``; None when there is none.

    The conditional UPDATE makes a row go to exactly one claimer across processes; a
    loser simply tries the next row.
    """
    for _ in range(10):
        row = (
            PoolNode.objects.filter(claimed_at__isnull=True, ready_at__isnull=False, image=image)
            .order_by("created_at", "id")
            .first()
        )
        if row is None:
            return None
        if PoolNode.objects.filter(pk=row.pk, claimed_at__isnull=True).update(claimed_at=now):
            row.claimed_at = now
            return row
    return None


def _drop(row: PoolNode) -> None:
    PoolNode.objects.filter(pk=row.pk).delete()


async def take(
    session: Session, node_name: str, image: str | None = None
) -> provisioning.NodeHandle | None:
    """A warm node of ``image`` moved onto ``session``'s network as ``node_name``, or None.

    None means "start one cold": the pool is off or empty, holds no node of ``image``
    (it holds PWD_NODE_IMAGE only), or the taken node failed to move (it is then
    removed). The caller must store the handle's container id in the node's row within
    CLAIM_GRACE; that row is what keeps the container the node's.
    """
    image = image or settings.PWD_NODE_IMAGE
    if settings.PWD_POOL_SIZE <= 0 or not session.network_name:
        return None
    row = await sync_to_async(_claim)(image, timezone.now())
    if row is None:
        return None
    container_id = row.container_id
    try:
        ip = await provisioning.run(
            provisioning.connect_node, container_id, session.network_name, node_name
        )
        await provisioning.run(provisioning.rename_node_host, container_id, node_name)
    except Exception:
        # Whatever went wrong, a cold start is the answer; this container is spoiled.
        log.warning("pool node %s could not be taken; starting one cold", container_id[:12])
        with contextlib.suppress(Exception):
            await provisioning.run(provisioning.remove_node, container_id)
        await sync_to_async(_drop)(row)
        return None
    log.info("took pool node %s as %s of %s", container_id[:12], node_name, session)
    return provisioning.NodeHandle(container_id, ip, {session.network_name: ip})


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
            except provisioning.EngineError as exc:
                log.warning("pool pass failed: %s", exc)
                stop.wait(5)
            except Exception:
                log.exception("pool pass failed")
                stop.wait(5)
            finally:
                close_old_connections()
            stop.wait(interval)

    def _start_one(self) -> bool:
        try:
            handle = provisioning.create_node(
                None, placeholder_name(), None, role=provisioning.ROLE_POOL
            )
        except provisioning.EngineError as exc:
            log.warning("could not start a pool node: %s", exc)
            return False
        try:
            PoolNode.objects.create(
                container_id=handle.container_id,
                image=settings.PWD_NODE_IMAGE,
                ready_at=timezone.now(),
            )
        except Exception:
            provisioning.remove_node(handle.container_id)
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
            for c in provisioning.list_objects().containers
            if (c.get("Labels") or {}).get(provisioning.LABEL_ROLE) == provisioning.ROLE_POOL
        }
        known = {row.container_id for row in rows}
        owned_by_nodes = set(
            Node.objects.filter(container_id__in=[*containers, *known]).values_list(
                "container_id", flat=True
            )
        )
        unclaimed = []
        for row in rows:
            container = containers.get(row.container_id)
            if row.container_id in owned_by_nodes:
                # Taken: the container is its node's now; the row marks it as accounted for.
                continue
            if row.claimed_at is not None:
                if row.claimed_at < now - CLAIM_GRACE:
                    # The node was removed, its session ended, or a take was abandoned.
                    log.info("removing pool node %s: no node has it", row.container_id[:12])
                    provisioning.remove_node(row.container_id)
                    _drop(row)
            elif container is None or container.get("State") != "running":
                log.info("removing pool node %s: container gone", row.container_id[:12])
                provisioning.remove_node(row.container_id)
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
                provisioning.remove_node(container_id)

    def _retire(self, row: PoolNode, why: str) -> None:
        # Claim it first, so no web process takes it while it is being removed.
        if PoolNode.objects.filter(pk=row.pk, claimed_at__isnull=True).update(
            claimed_at=timezone.now()
        ):
            log.info("removing pool node %s: %s", row.container_id[:12], why)
            provisioning.remove_node(row.container_id)
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
