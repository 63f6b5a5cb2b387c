"""Sessions and their nodes: the domain rules live here, views and consumers stay thin."""

import secrets
from datetime import datetime, timedelta

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


class SessionQuerySet(models.QuerySet):
    def active(self, now: datetime | None = None) -> "SessionQuerySet":
        """Sessions that have not ended and are within both lifetime and idle limits."""
        now = now or timezone.now()
        return self.filter(
            ended_at__isnull=True,
            created_at__gt=now - timedelta(seconds=settings.PWD_SESSION_LIFETIME),
            last_activity_at__gt=now - timedelta(seconds=settings.PWD_IDLE_TIMEOUT),
        )

    def expired(self, now: datetime | None = None) -> "SessionQuerySet":
        """Sessions past a limit that have not been marked ended yet."""
        now = now or timezone.now()
        return self.filter(ended_at__isnull=True).filter(
            models.Q(created_at__lte=now - timedelta(seconds=settings.PWD_SESSION_LIFETIME))
            | models.Q(last_activity_at__lte=now - timedelta(seconds=settings.PWD_IDLE_TIMEOUT))
        )

    def expiring(self, now: datetime | None = None) -> "SessionQuerySet":
        """Active sessions within PWD_EXPIRY_WARNING of their end and not warned yet."""
        now = now or timezone.now()
        soon = now + timedelta(seconds=settings.PWD_EXPIRY_WARNING)
        return (
            self.active(now)
            .filter(expiry_warned_at__isnull=True)
            .filter(
                models.Q(created_at__lte=soon - timedelta(seconds=settings.PWD_SESSION_LIFETIME))
                | models.Q(
                    last_activity_at__lte=soon - timedelta(seconds=settings.PWD_IDLE_TIMEOUT)
                )
            )
        )


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
        """The end of the session's lifetime: the hard maximum, which nothing moves."""
        return self.created_at + timedelta(seconds=settings.PWD_SESSION_LIFETIME)

    @property
    def expires_at(self) -> datetime:
        """The earlier of the hard lifetime limit and the idle limit."""
        return min(
            self.hard_expires_at,
            self.last_activity_at + timedelta(seconds=settings.PWD_IDLE_TIMEOUT),
        )

    def at_maximum(self) -> bool:
        """Whether the idle limit already reaches the hard end, so nothing can extend it."""
        idle_end = self.last_activity_at + timedelta(seconds=settings.PWD_IDLE_TIMEOUT)
        return idle_end >= self.hard_expires_at

    def is_active(self, now: datetime | None = None) -> bool:
        return self.ended_at is None and (now or timezone.now()) < self.expires_at

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


class PoolNode(models.Model):
    """A pre-started node waiting on no network for a session to take it.

    Claimed with a conditional UPDATE, so several web processes can share one pool. A
    node claimed to be prepared (attached ahead) for a session names it in ``session``
    and the name it will be handed out as in ``node_name``; ``prepared_at`` is set once
    it is on the session's network as that name. Taking it clears ``session``.
    """

    container_id = models.CharField(max_length=128, unique=True)
    image = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)
    ready_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    session = models.ForeignKey(
        Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    node_name = models.CharField(max_length=32, blank=True)
    ip = models.CharField(max_length=64, blank=True)
    prepared_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["session"], name="one_prepared_node_per_session")
        ]

    def __str__(self) -> str:
        return f"pool node {self.container_id[:12]}"
