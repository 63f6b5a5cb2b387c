"""Sessions and their nodes: the domain rules live here, views and consumers stay thin."""

import secrets
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import models
from django.utils import timezone


def new_session_id() -> str:
    """A URL-safe id with 192 random bits (32 characters)."""
    return secrets.token_urlsafe(24)


PORT_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
PORT_TOKEN_LENGTH = 16


def new_port_token() -> str:
    """The session's name in port URLs: DNS-safe (lower case, digits; host names are
    case-insensitive and may not hold ``_``), about 82 random bits, and not the session
    id, so a shared link to a trainee's web app grants its ports, never its terminals."""
    return "".join(secrets.choice(PORT_TOKEN_ALPHABET) for _ in range(PORT_TOKEN_LENGTH))


class Slot(NamedTuple):
    """An active session, locked until the transaction ends, and its lowest free node
    name (None when all ``max_nodes`` are used)."""

    session: "Session"
    name: str | None


class SessionQuerySet(models.QuerySet):
    def next_slot(self, session_id: str, now: datetime | None = None) -> Slot | None:
        """Lock the active session's row and find its lowest free node name; None when the
        session is not active.

        Call inside ``transaction.atomic()``. An add (which inserts the node row) and an
        attach ahead (which claims a pool node under the name) both choose names here, so
        until the transaction ends nobody else chooses one for this session: IMMEDIATE
        transactions (SQLite) or the row lock (PostgreSQL) serialise them, and the unique
        (session, name) constraint backs them up.
        """
        session = self.select_for_update().active(now).filter(pk=session_id).first()
        if session is None:
            return None
        taken = set(session.nodes.values_list("name", flat=True))
        return Slot(session, Node.free_name(taken, session.max_nodes))

    def active(self, now: datetime | None = None) -> "SessionQuerySet":
        """Sessions handed out (not held), not ended, and within their limits."""
        now = now or timezone.now()
        return self.filter(ended_at__isnull=True, held_at__isnull=True).filter(_within_limits(now))

    def expired(self, now: datetime | None = None) -> "SessionQuerySet":
        """Sessions past a limit that have not been marked ended yet (never a held one:
        its clock starts when it is handed out)."""
        now = now or timezone.now()
        return self.filter(ended_at__isnull=True, held_at__isnull=True).exclude(_within_limits(now))

    def expiring(self, now: datetime | None = None) -> "SessionQuerySet":
        """Active sessions within PWD_EXPIRY_WARNING of their end and not warned yet."""
        now = now or timezone.now()
        soon = now + timedelta(seconds=settings.PWD_EXPIRY_WARNING)
        return self.active(now).filter(expiry_warned_at__isnull=True).exclude(_within_limits(soon))


def _within_limits(now: datetime) -> models.Q:
    """Sessions still within their limits at ``now``: a fixed end (``ends_at``, a
    workshop's seat) when set, else both the lifetime and the idle limit."""
    fixed = models.Q(ends_at__isnull=False, ends_at__gt=now)
    floating = models.Q(
        ends_at__isnull=True,
        created_at__gt=now - timedelta(seconds=settings.PWD_SESSION_LIFETIME),
        last_activity_at__gt=now - timedelta(seconds=settings.PWD_IDLE_TIMEOUT),
    )
    return fixed | floating


class Session(models.Model):
    id = models.CharField(primary_key=True, max_length=64, default=new_session_id, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_activity_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    # Set once the reaper has removed everything the session had on the engine.
    cleaned_at = models.DateTimeField(null=True, blank=True)
    expiry_warned_at = models.DateTimeField(null=True, blank=True)
    max_nodes = models.PositiveSmallIntegerField(default=5)
    network_name = models.CharField(max_length=128, blank=True)
    network_id = models.CharField(max_length=128, blank=True)
    # A keyed hash of the creating client's address (never the address itself), for
    # the per-address creation rate (sessions_app.quotas).
    client_key = models.CharField(max_length=32, blank=True)
    # The session in port URLs (<token>-<node>-<port>.<PWD_PORTS_DOMAIN>); see ports.
    port_token = models.CharField(max_length=32, unique=True, default=new_port_token)
    # Set while a swarm setup (sessions_app.setup) runs: the claim that makes a second
    # setup at once answer 409, whichever process it reaches.
    setup_started_at = models.DateTimeField(null=True, blank=True)
    # A fixed end that replaces the lifetime and idle limits (a workshop seat's session
    # lasts until the workshop ends, however idle its trainee is).
    ends_at = models.DateTimeField(null=True, blank=True)
    # Set while the session is held ready by the keeper for a Start to take (sessions_app.hot):
    # not active, so nobody sees it, counts it or ends it until it is handed out.
    held_at = models.DateTimeField(null=True, blank=True)

    objects = SessionQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["ended_at", "last_activity_at"]),
            models.Index(fields=["client_key", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"session {self.short_id}"

    @property
    def short_id(self) -> str:
        """The first characters of the id, safe for logs (the full id is a credential)."""
        return self.id[:6]

    @property
    def page_path(self) -> str:
        """The session page, where a trainee works with the nodes."""
        return f"/p/{self.id}/"

    @property
    def hard_expires_at(self) -> datetime:
        """The end of the session's lifetime: the hard maximum, which nothing moves (for
        a session with a fixed end, that end)."""
        if self.ends_at is not None:
            return self.ends_at
        return self.created_at + timedelta(seconds=settings.PWD_SESSION_LIFETIME)

    @property
    def expires_at(self) -> datetime:
        """The earlier of the hard lifetime limit and the idle limit (a fixed end, when
        the session has one)."""
        if self.ends_at is not None:
            return self.ends_at
        return min(
            self.hard_expires_at,
            self.last_activity_at + timedelta(seconds=settings.PWD_IDLE_TIMEOUT),
        )

    def at_maximum(self) -> bool:
        """Whether the idle limit already reaches the hard end, so nothing can extend it
        (always, for a fixed end: only its workshop moves it)."""
        if self.ends_at is not None:
            return True
        idle_end = self.last_activity_at + timedelta(seconds=settings.PWD_IDLE_TIMEOUT)
        return idle_end >= self.hard_expires_at

    def is_active(self, now: datetime | None = None) -> bool:
        if self.ended_at is not None or self.held_at is not None:
            return False
        return (now or timezone.now()) < self.expires_at

    def touch(self, now: datetime | None = None) -> None:
        """Record activity; a conditional UPDATE keeps hot paths to one cheap query.

        Writes at most once a second per session and never revives an ended one.
        """
        now = now or timezone.now()
        self._record_activity(now, since=now - timedelta(seconds=1))

    def extend(self, now: datetime | None = None) -> bool:
        """Push the idle limit to ``now + PWD_IDLE_TIMEOUT`` (never the hard end).

        Returns False, changing nothing, when the session is at its maximum (see
        :meth:`at_maximum`) or has ended meanwhile.
        """
        now = now or timezone.now()
        if self.at_maximum():
            return False
        return self._record_activity(now, since=now)

    def _record_activity(self, now: datetime, since: datetime) -> bool:
        """Set ``last_activity_at`` to ``now`` unless it is already at or past ``since``."""
        changes: dict[str, datetime | None] = {"last_activity_at": now}
        # Activity pushes back the idle limit, not the lifetime: a warning about the hard
        # end stays given, or an active trainee would be warned again on every pass.
        if self.hard_expires_at - now > timedelta(seconds=settings.PWD_EXPIRY_WARNING):
            changes["expiry_warned_at"] = None
        updated = Session.objects.filter(
            pk=self.pk, ended_at__isnull=True, last_activity_at__lt=since
        ).update(**changes)
        if updated:
            for name, value in changes.items():
                setattr(self, name, value)
        return bool(updated)

    def claim_setup(self, stale_after: timedelta, now: datetime | None = None) -> bool:
        """Claim the active session for a setup, in one conditional UPDATE: only while it
        has no nodes and no other setup holds it (a claim older than ``stale_after`` was
        abandoned by a process that died). Returns False when not claimed."""
        now = now or timezone.now()
        updated = (
            Session.objects.active(now)
            .filter(pk=self.pk)
            .filter(
                models.Q(setup_started_at__isnull=True)
                | models.Q(setup_started_at__lt=now - stale_after)
            )
            .exclude(models.Exists(Node.objects.filter(session=models.OuterRef("pk"))))
            .update(setup_started_at=now)
        )
        if updated:
            self.setup_started_at = now
        return bool(updated)

    def release_setup(self) -> None:
        """Drop this process's setup claim (not one a later setup took over)."""
        Session.objects.filter(pk=self.pk, setup_started_at=self.setup_started_at).update(
            setup_started_at=None
        )
        self.setup_started_at = None

    def end(self, now: datetime | None = None) -> bool:
        """Mark the session ended. Returns False when it had already ended."""
        now = now or timezone.now()
        updated = Session.objects.filter(pk=self.pk, ended_at__isnull=True).update(ended_at=now)
        if updated:
            self.ended_at = now
        return bool(updated)


class Node(models.Model):
    class Status(models.TextChoices):
        STARTING = "starting"
        RUNNING = "running"
        GONE = "gone"

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="nodes")
    name = models.CharField(max_length=32)
    hostname = models.CharField(max_length=64)
    image = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.STARTING)
    container_id = models.CharField(max_length=128, blank=True)
    ip = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    gone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["session", "name"], name="unique_node_name_per_session")
        ]
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.name} of {self.session}"

    @property
    def number(self) -> int:
        return int(self.name.removeprefix("node"))

    @property
    def terminal_path(self) -> str:
        return f"/ws/sessions/{self.session_id}/nodes/{self.name}/terminal/"

    def mark_gone(self, now: datetime | None = None) -> bool:
        """Mark a node the engine has lost. Returns False when it was already gone."""
        now = now or timezone.now()
        updated = (
            Node.objects.filter(pk=self.pk)
            .exclude(status=Node.Status.GONE)
            .update(status=Node.Status.GONE, gone_at=now)
        )
        if updated:
            self.status = Node.Status.GONE
            self.gone_at = now
        return bool(updated)

    @staticmethod
    def free_name(taken: set[str], limit: int) -> str | None:
        """The lowest ``nodeN`` not in ``taken``, or None when all ``limit`` are used."""
        for number in range(1, limit + 1):
            name = f"node{number}"
            if name not in taken:
                return name
        return None


class PoolNodeQuerySet(models.QuerySet):
    def ready(self, image: str | None = None) -> "PoolNodeQuerySet":
        """Nodes waiting on no network for any session to take (of ``image``, if given)."""
        rows = self.filter(status=PoolNode.Status.READY)
        return rows if image is None else rows.filter(image=image)

    def attached_ahead(self) -> "PoolNodeQuerySet":
        """Nodes claimed for a session's next add, being attached or waiting on its network."""
        return self.filter(status__in=[PoolNode.Status.PREPARING, PoolNode.Status.PREPARED])

    def prepared_for(self, session: "Session | str") -> "PoolNodeQuerySet":
        """The node attached ahead for ``session`` (a row or an id): at most one."""
        return self.attached_ahead().filter(session=session)

    def claim(
        self, status: str, now: datetime | None = None, **fields: object
    ) -> "PoolNode | None":
        """Move the oldest ready row of this queryset to ``status``; None when there is none.

        READY is left by a conditional UPDATE, so a row goes to exactly one claimer across
        processes; a loser tries the next row. ``fields`` are written with the claim, and
        ``claimed_at`` is set to ``now``.
        """
        now = now or timezone.now()
        for _ in range(10):
            row = self.ready().order_by("created_at", "id").first()
            if row is None:
                return None
            changes = {"status": status, "claimed_at": now, **fields}
            if PoolNode.objects.filter(pk=row.pk, status=PoolNode.Status.READY).update(**changes):
                for name, value in changes.items():
                    setattr(row, name, value)
                return row
        return None


class PoolNode(models.Model):
    """A pre-started node of the warm pool, from its start to the moment a node owns it.

    ``ready`` (on no network, anyone may claim it) → ``taken`` (a session's node now;
    the row stays while a node row of an active session names the container), or →
    ``preparing`` (claimed for ``session``'s next add as ``node_name``, being attached)
    → ``prepared`` (on the session network at ``ip``) → ``taken`` by the add of that
    name; or ``ready`` → ``retiring`` (the keeper removes it). Every move is a
    conditional UPDATE, so several web processes and keepers share one pool.
    ``claimed_at`` is when the row last left ``ready`` or ``prepared``.
    """

    class Status(models.TextChoices):
        READY = "ready"
        PREPARING = "preparing"
        PREPARED = "prepared"
        TAKEN = "taken"
        RETIRING = "retiring"

    container_id = models.CharField(max_length=128, unique=True)
    image = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.READY)
    created_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    session = models.ForeignKey(
        Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    node_name = models.CharField(max_length=32, blank=True)
    ip = models.CharField(max_length=64, blank=True)

    objects = PoolNodeQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["session"], name="one_prepared_node_per_session")
        ]

    def __str__(self) -> str:
        return f"pool node {self.container_id[:12]}"

    def mark_prepared(self, ip: str) -> bool:
        """``preparing`` → ``prepared``: on its session's network as ``node_name``. False
        when the preparation was given up meanwhile (the row was removed)."""
        return self._move(self.Status.PREPARING, self.Status.PREPARED, ip=ip)

    def hand_out(self, now: datetime | None = None) -> bool:
        """``prepared`` → ``taken`` by the add of its name; the claim starts again (the
        node row must name the container within the keeper's grace). False when another
        add or the keeper got to it first."""
        changes = {"session": None, "node_name": "", "claimed_at": now or timezone.now()}
        return self._move(self.Status.PREPARED, self.Status.TAKEN, **changes)

    def drop(self) -> bool:
        """Delete the row if it is still in the state it was read in; whether it was."""
        deleted, _ = PoolNode.objects.filter(pk=self.pk, status=self.status).delete()
        return bool(deleted)

    def _move(self, source: str, target: str, **fields: object) -> bool:
        changes = {"status": target, **fields}
        if not PoolNode.objects.filter(pk=self.pk, status=source).update(**changes):
            return False
        for name, value in changes.items():
            setattr(self, name, value)
        return True
