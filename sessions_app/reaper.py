"""The reaper: ends sessions past their limits and keeps the engine in line with the DB.

One pass (:meth:`Reaper.run_once`):

1. warn the viewers of sessions about to expire (``session.expiring``, once);
2. end expired sessions (``session.ended``);
3. remove what ended sessions left on the engine, then mark them cleaned;
4. reconcile: remove labelled objects the database does not account for (and node
   disks no container claims; pool containers are the keeper's), and mark nodes the
   engine has lost as gone (``node.gone``).

Several reapers may run at once: every state change is a conditional UPDATE that only
one of them wins (and only the winner announces it), and removal is idempotent. An
engine error is logged and the pass goes on; the next pass retries. Nothing here ends
a session that is still valid, so restarting any process is harmless.
"""

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from metrics import tally
from sessions_app import engine, events, hot, pool, removals
from sessions_app.models import Node, Session

log = logging.getLogger(__name__)

# Probe containers live a few seconds; older ones were left by a crash.
PROBE_GRACE = timedelta(minutes=1)
# A volume is created a moment before its container; leave young ones alone.
VOLUME_GRACE = timedelta(minutes=1)
# A node row still "starting" this long after the start timeout belongs to a web
# process that died while starting it.
STARTING_GRACE = timedelta(minutes=1)


@dataclass
class PassReport:
    """What one pass did, for logs and tests."""

    warned: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    removed_containers: list[str] = field(default_factory=list)
    removed_networks: list[str] = field(default_factory=list)
    removed_volumes: list[str] = field(default_factory=list)
    removed_disks: list[str] = field(default_factory=list)
    gone_nodes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(value for value in vars(self).values())


class Reaper:
    def __init__(self, interval: float | None = None) -> None:
        self.interval = interval if interval is not None else settings.PWD_REAP_INTERVAL
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask the loop to stop after the current step (safe from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run_forever(self) -> None:
        """One pass at once, then one every ``interval`` seconds until stopped."""
        while not self.stopping:
            self.run_once()
            self._stop.wait(self.interval)

    def run_once(self, now: datetime | None = None) -> PassReport:
        """One pass; never raises for an engine or database hiccup (it logs it)."""
        report = PassReport()
        close_old_connections()
        try:
            for step in (self.warn_expiring, self.end_expired, self.clean_ended, self.reconcile):
                if self.stopping:
                    break
                try:
                    step(report, now or timezone.now())
                except Exception as exc:  # noqa: BLE001 - survive, retry on the next pass
                    log.warning("reaper step %s failed: %s", step.__name__, exc)
                    report.errors.append(f"{step.__name__}: {exc}")
        finally:
            close_old_connections()
        if report:
            log.info("reaper pass: %s", _summary(report))
        tally.reaper_pass(len(report.errors))
        return report

    # --- lifecycle ---------------------------------------------------------------------

    def warn_expiring(self, report: PassReport, now: datetime) -> None:
        for session in Session.objects.expiring(now):
            # Only the reaper whose UPDATE wins announces it; activity since the query
            # (touch() resets last_activity_at) makes the UPDATE miss, as it should.
            claimed = Session.objects.filter(
                pk=session.pk,
                expiry_warned_at__isnull=True,
                ended_at__isnull=True,
                last_activity_at=session.last_activity_at,
            ).update(expiry_warned_at=now)
            if claimed:
                events.publish_sync(
                    session.id,
                    {
                        "type": "session.expiring",
                        "expires_at": session.expires_at.isoformat(),
                        "seconds_left": max(0, round((session.expires_at - now).total_seconds())),
                    },
                )
                report.warned.append(session.id)

    def end_expired(self, report: PassReport, now: datetime) -> None:
        # A held session (sessions_app.hot) that broke ends here too, unseen by anyone.
        for session in [*Session.objects.expired(now), *hot.spoiled(now)]:
            if session.end(now):
                events.publish_sync(session.id, {"type": "session.ended", "reason": "expired"})
                report.ended.append(session.id)

    def clean_ended(self, report: PassReport, now: datetime) -> None:
        pending = Session.objects.filter(ended_at__isnull=False, cleaned_at__isnull=True)
        for session_id in pending.values_list("pk", flat=True):
            if self.stopping:
                return
            # Claim: the reaper that sets cleaned_at does the work; on failure it lets
            # go so a later pass retries. A crash after claiming leaves objects of an
            # ended session, which reconcile() removes anyway.
            claimed = Session.objects.filter(pk=session_id, cleaned_at__isnull=True).update(
                cleaned_at=now
            )
            if not claimed:
                continue
            try:
                # A pool node being attached ahead finishes first (see pool).
                pool.wait_for_preparation_sync(session_id)
                engine.remove_session_objects(session_id)
            except Exception:
                Session.objects.filter(pk=session_id).update(cleaned_at=None)
                raise
            removals.mark_cleaned(session_id)
            report.cleaned.append(session_id)

    # --- reconciliation ----------------------------------------------------------------

    def reconcile(self, report: PassReport, now: datetime) -> None:
        # The engine first, the database second: a node row is written before its
        # container exists, so every listed container's row is already visible.
        objects = engine.list_objects()
        active = set(Session.objects.active(now).values_list("pk", flat=True))
        active.update(hot.held().values_list("pk", flat=True))  # their objects stay too
        rows = {
            (node.session_id, node.name): node
            for node in Node.objects.filter(session_id__in=active)
        }

        running: set[str] = set()
        mounted: set[str] = set()
        for container in objects.containers:
            mounted.update(m.get("Name", "") for m in container.get("Mounts") or [])
            if container.get("State") == "running":
                running.add(container["Id"])
            why = self._orphan_reason(container, active, rows, now)
            if why:
                self._remove(report, container, why)

        self._remove_stuck_starts(report, rows, objects.containers, now)
        self._mark_lost_nodes(report, rows, running)

        for network in objects.networks:
            session_id = _labels(network).get(engine.LABEL_SESSION)
            if session_id not in active and _attempt(report, engine.remove_network, network["Id"]):
                report.removed_networks.append(network.get("Name", network["Id"]))

        for volume in objects.volumes:
            created = _parse_time(volume.get("CreatedAt"))
            if volume["Name"] in mounted or (created and now - created < VOLUME_GRACE):
                continue
            if _attempt(report, engine.remove_volume, volume["Name"]):
                report.removed_volumes.append(volume["Name"])

        # Node disks no container claims (of any instance: they share the folder).
        report.removed_disks.extend(engine.remove_unused_disks())
        # Ports of nodes gone since the last join leave the anti-spoofing table.
        engine.guard_gateway()

    def _orphan_reason(
        self,
        container: dict[str, Any],
        active: set[str],
        rows: dict[tuple[str, str], Node],
        now: datetime,
    ) -> str | None:
        """Why a labelled container should go, or None when the database accounts for it."""
        labels = _labels(container)
        role = labels.get(engine.LABEL_ROLE)
        age = now - datetime.fromtimestamp(container.get("Created", 0), tz=UTC)
        if role == engine.ROLE_POOL:
            # The keeper's (sessions_app.keeper): it knows which of them a node has taken.
            return None
        if role == engine.ROLE_PROBE:
            return "stale probe" if age > PROBE_GRACE else None
        if role != engine.ROLE_NODE:
            return f"unknown role {role!r}"
        session_id = labels.get(engine.LABEL_SESSION)
        if session_id not in active:
            return "its session is unknown or has ended"
        node = rows.get((session_id, labels.get(engine.LABEL_NODE, "")))
        if node is None:
            return "no node row"
        if node.status == Node.Status.STARTING:
            return None
        if node.container_id != container["Id"]:
            return "not the container its node row names"
        return None

    def _remove_stuck_starts(
        self,
        report: PassReport,
        rows: dict[tuple[str, str], Node],
        containers: list[dict[str, Any]],
        now: datetime,
    ) -> None:
        limit = timedelta(seconds=settings.PWD_NODE_START_TIMEOUT) + STARTING_GRACE
        for (session_id, name), node in rows.items():
            if node.status != Node.Status.STARTING or now - node.created_at < limit:
                continue
            for container in containers:
                labels = _labels(container)
                if (
                    labels.get(engine.LABEL_SESSION) == session_id
                    and labels.get(engine.LABEL_NODE) == name
                ):
                    self._remove(report, container, "its node never finished starting")
            Node.objects.filter(pk=node.pk, status=Node.Status.STARTING).delete()

    def _mark_lost_nodes(
        self, report: PassReport, rows: dict[tuple[str, str], Node], running: set[str]
    ) -> None:
        for node in rows.values():
            if node.status != Node.Status.RUNNING or node.container_id in running:
                continue
            # Look again: the listing is a moment old and the node may have just started.
            if engine.container_status(node.container_id) == "running":
                continue
            engine.remove_node(node.container_id)
            if node.mark_gone():
                events.publish_sync(node.session_id, {"type": "node.gone", "name": node.name})
                report.gone_nodes.append(f"{node.session_id[:6]}/{node.name}")

    @staticmethod
    def _remove(report: PassReport, container: dict[str, Any], why: str) -> None:
        labels = _labels(container)
        log.info(
            "removing container %s (%s %s/%s): %s",
            container["Id"][:12],
            labels.get(engine.LABEL_ROLE),
            (labels.get(engine.LABEL_SESSION) or "-")[:6],
            labels.get(engine.LABEL_NODE, "-"),
            why,
        )
        if _attempt(report, engine.remove_node, container["Id"]):
            report.removed_containers.append(container["Id"])


def _attempt(report: PassReport, remove: Any, object_id: str) -> bool:
    """Run one idempotent removal; a failure is logged and retried on the next pass."""
    try:
        remove(object_id)
    except engine.EngineError as exc:
        log.warning("could not remove %s: %s", object_id[:12], exc)
        report.errors.append(f"{remove.__name__} {object_id[:12]}: {exc}")
        return False
    return True


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return obj.get("Labels") or {}


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        return None


def _summary(report: PassReport) -> str:
    # Counts only: session ids are credentials and stay out of the logs.
    return ", ".join(f"{name} {len(items)}" for name, items in vars(report).items() if items)
