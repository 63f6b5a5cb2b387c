"""Workshops, their seats, and instructors' API tokens: the rules live here."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from sessions_app.models import Session

# Join codes: no 0/O, 1/I/L, easy to read aloud and type on a phone.
JOIN_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
JOIN_CODE_LENGTH = 6
INSTRUCT = "workshops.instruct"


def new_join_code() -> str:
    return "".join(secrets.choice(JOIN_ALPHABET) for _ in range(JOIN_CODE_LENGTH))


def hash_secret(secret: str) -> str:
    """Tokens and trainees' seat keys are stored as this hash, never as given."""
    return hashlib.sha256(secret.encode()).hexdigest()


class WorkshopQuerySet(models.QuerySet):
    def running(self, now: datetime | None = None) -> WorkshopQuerySet:
        """Workshops not ended, before their end time."""
        now = now or timezone.now()
        return self.filter(ended_at__isnull=True, ends_at__gt=now)

    def to_prepare(self, now: datetime | None = None) -> WorkshopQuerySet:
        """Running workshops whose seats should be made now: from creation, or
        PWD_WORKSHOP_PREPARE_BEFORE before ``starts_at``."""
        now = now or timezone.now()
        lead = timedelta(seconds=settings.PWD_WORKSHOP_PREPARE_BEFORE)
        return self.running(now).filter(
            models.Q(starts_at__isnull=True) | models.Q(starts_at__lte=now + lead)
        )

    def of_instructor(self, user: object) -> WorkshopQuerySet:
        return self.filter(instructors=user)


class Workshop(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=200)
    seats = models.PositiveSmallIntegerField()
    nodes_per_seat = models.PositiveSmallIntegerField(default=1)
    # A swarm template (sessions_app.setup.TEMPLATES); empty: nodes_per_seat plain nodes.
    template = models.CharField(max_length=64, blank=True)
    image = models.CharField(max_length=255)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField()
    join_code = models.CharField(max_length=16, unique=True, default=new_join_code)
    created_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    instructors = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="workshops")
    # The last message broadcast to every trainee's page (shown to late joiners too).
    message = models.CharField(max_length=500, blank=True)
    message_at = models.DateTimeField(null=True, blank=True)

    objects = WorkshopQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        permissions = [("instruct", "Can run workshops")]

    def __str__(self) -> str:
        return self.title

    @property
    def join_path(self) -> str:
        return f"/w/{self.join_code}/"

    @property
    def dashboard_path(self) -> str:
        return f"/workshops/{self.id}/"

    @property
    def nodes_wanted(self) -> int:
        """Nodes each seat has once ready."""
        if self.template:
            from sessions_app.setup import TEMPLATES

            return len(TEMPLATES.get(self.template, ()))
        return self.nodes_per_seat

    def is_running(self, now: datetime | None = None) -> bool:
        return self.ended_at is None and (now or timezone.now()) < self.ends_at

    def end(self, now: datetime | None = None) -> bool:
        """Mark it ended. False when it had already ended."""
        now = now or timezone.now()
        updated = Workshop.objects.filter(pk=self.pk, ended_at__isnull=True).update(ended_at=now)
        if updated:
            self.ended_at = now
        return bool(updated)


class SeatQuerySet(models.QuerySet):
    def claimable(self, now: datetime | None = None) -> SeatQuerySet:
        """Seats a provisioner may start making: waiting, or failed and due a retry, or
        provisioning but abandoned by a process that died (its claim went stale)."""
        now = now or timezone.now()
        stale = now - timedelta(seconds=settings.PWD_WORKSHOP_SEAT_TIMEOUT)
        return self.filter(
            models.Q(status=Seat.Status.WAITING)
            | models.Q(status=Seat.Status.FAILED, retry_at__lte=now)
            | models.Q(status=Seat.Status.PROVISIONING, claimed_at__lt=stale)
        )


class Seat(models.Model):
    class Status(models.TextChoices):
        WAITING = "waiting"  # shown as provisioning: nothing made yet
        PROVISIONING = "provisioning"
        READY = "ready"
        TAKEN = "taken"
        FAILED = "failed"

    workshop = models.ForeignKey(Workshop, on_delete=models.CASCADE, related_name="seat_set")
    number = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.WAITING)
    session = models.OneToOneField(
        Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="seat"
    )
    trainee_name = models.CharField(max_length=80, blank=True)
    # The hash of the key in the trainee's browser (a cookie): the same browser rejoins.
    trainee_key = models.CharField(max_length=64, blank=True, db_index=True)
    taken_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    retry_at = models.DateTimeField(null=True, blank=True)

    objects = SeatQuerySet.as_manager()

    class Meta:
        ordering = ["workshop", "number"]
        constraints = [
            models.UniqueConstraint(fields=["workshop", "number"], name="unique_seat_number")
        ]

    def __str__(self) -> str:
        return f"seat {self.number} of {self.workshop}"

    @property
    def shown_status(self) -> str:
        """The status the API shows: waiting is provisioning that has not begun."""
        if self.status == Seat.Status.WAITING:
            return Seat.Status.PROVISIONING
        return self.status


class ApiToken(models.Model):
    """An instructor's token for scripts: only its hash is kept."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"token {self.prefix}… of {self.user}"

    @classmethod
    def issue(cls, user: object) -> str:
        """Create a token for ``user`` and return it; it cannot be read back later."""
        token = secrets.token_urlsafe(32)
        cls.objects.create(user=user, key_hash=hash_secret(token), prefix=token[:8])
        return token
