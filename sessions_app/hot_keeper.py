"""The keeper of hot sessions (``manage.py pool``): makes the held sessions a Start takes.

:class:`HotKeeper` is the pool's :class:`~sessions_app.keeper.Keeper` with one step more
in each pass: after the warm pool is topped up, it drops the held sessions that broke
and begins at most ``parallelism`` new ones until PWD_POOL_SESSIONS are held, so a Start
that took one is replaced in the background and neither kind of refill starves the
other. Safe in several processes at once: a Start's claim and a drop are conditional
UPDATEs, and a surplus from two keepers racing is dropped on the next pass.
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from sessions_app import engine, hot, quotas
from sessions_app.keeper import Keeper
from sessions_app.models import Node, PoolNode, Session

log = logging.getLogger(__name__)


class HotKeeper(Keeper):
    """Keeps ``size`` ready pool nodes and ``sessions`` held sessions (PWD_POOL_SIZE and
    PWD_POOL_SESSIONS by default)."""

    def __init__(
        self,
        size: int | None = None,
        parallelism: int | None = None,
        sessions: int | None = None,
    ) -> None:
        super().__init__(size, parallelism)
        self.sessions = settings.PWD_POOL_SESSIONS if sessions is None else sessions
        self._makers = ThreadPoolExecutor(self.parallelism, thread_name_prefix="pwd-hot")

    def close(self) -> None:
        self._makers.shutdown(wait=True)
        super().close()

    def run_once(self, wait: bool | None = None) -> int:
        """The pool's pass (see :meth:`Keeper.run_once` for ``wait`` and what it
        returns), then :meth:`hold`."""
        started = super().run_once(wait)
        self.hold()
        return started

    def hold(self, now: datetime | None = None) -> int:
        """Drop what cannot be handed out (:meth:`drop_broken`), then make up to
        ``parallelism`` held sessions while fewer than ``sessions`` are held and the caps
        leave room (:func:`room`). Returns how many were made; raises EngineUnavailable
        when the engine does not answer."""
        now = now or timezone.now()
        self.drop_broken(now)
        wanted = min(self.sessions - hot.held().count(), self.parallelism, room(now))
        futures = [self._makers.submit(self._make_one) for _ in range(max(0, wanted))]
        made = 0
        for future in futures:
            try:
                made += bool(future.result())
            except Exception:
                log.exception("could not make a held session")
        return made

    def drop_broken(self, now: datetime | None = None) -> list[str]:
        """End and remove the held sessions that cannot be handed out: spoiled ones
        (:func:`hot.spoiled`), ready ones whose node1 container does not run or whose
        network the engine lost, and the newest ready ones beyond ``sessions``. Returns
        their ids."""
        now = now or timezone.now()
        broken = set(hot.spoiled(now).values_list("pk", flat=True))
        # Rows first: node1 is marked running only once its container runs, so every row
        # read here has its container in the listing below unless it really is gone.
        rows = list(
            Node.objects.filter(session__in=hot.ready(), name=hot.NODE)
            .order_by("session__held_at", "session_id")
            .values_list("session_id", "container_id", "session__network_name")
        )
        if rows:
            objects = engine.list_objects()
            running = {c["Id"] for c in objects.containers if c.get("State") == "running"}
            networks = {n.get("Name") for n in objects.networks}
            for session_id, container_id, network in rows:
                if container_id not in running or network not in networks:
                    broken.add(session_id)
            kept = [row[0] for row in rows if row[0] not in broken]
            broken.update(kept[max(0, self.sessions) :])
        dropped = [session_id for session_id in broken if hot.drop(session_id, now)]
        for session_id in dropped:
            log.info("dropping held session %s: it cannot be handed out", session_id[:6])
            try:
                engine.remove_session_objects(session_id)
            except engine.EngineError as exc:
                log.warning("held session %s is left to the reaper: %s", session_id[:6], exc)
        return dropped

    def _make_one(self) -> bool:
        try:
            make_held_session()
        except engine.EngineError as exc:
            log.warning("could not make a held session: %s", exc)
            return False
        finally:
            close_old_connections()
        return True


def room(now: datetime | None = None) -> int:
    """How many more sessions may be held: the active and held sessions stay under
    PWD_MAX_SESSIONS, the nodes in use, attached ahead and held under
    PWD_MAX_TOTAL_NODES. Users are never counted against held ones (quotas), so this is
    what keeps held sessions to the capacity users leave."""
    held = hot.held().count()
    sessions = settings.PWD_MAX_SESSIONS - Session.objects.active(now).count() - held
    in_use = quotas.nodes_in_use() + PoolNode.objects.attached_ahead().count()
    return max(0, min(sessions, settings.PWD_MAX_TOTAL_NODES - in_use - held))


def make_held_session() -> Session:
    """Make one held session: its row, its overlay network, node1 started on it as any
    node of the session is (labelled for it, named ``node1``, its inner engine answering,
    its login shell on the TTY). Blocking. On failure what was made is removed and
    EngineError is raised.

    The row comes first, as for any session: the reaper removes labelled objects whose
    session the database does not know.
    """
    session = Session.objects.create(held_at=timezone.now(), max_nodes=settings.PWD_MAX_NODES)
    image = settings.PWD_NODE_IMAGE
    try:
        name, network_id = engine.create_session_network(session.id)
        Session.objects.filter(pk=session.pk).update(network_name=name, network_id=network_id)
        node = Node.objects.create(session=session, name=hot.NODE, hostname=hot.NODE, image=image)
        handle = engine.create_node(
            session.id,
            hot.NODE,
            name,
            image,
            name=engine.container_name(session.short_id, hot.NODE),
        )
        Node.objects.filter(pk=node.pk).update(
            status=Node.Status.RUNNING, container_id=handle.container_id, ip=handle.ip
        )
    except BaseException:
        hot.drop(session.pk)
        with contextlib.suppress(engine.EngineError):
            engine.remove_session_objects(session.id)
        raise
    log.info("holding %s for a Start", session)
    return session
