"""What the workshop API and pages call: create, roster, join, extend, message, end.

Seats are made by the provisioner (workshops.provision, ``manage.py workshops``); here a
workshop and its seat rows are written, and seats are handed out with conditional
UPDATEs, so several web processes never give one seat to two trainees.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from sessions_app import engine, events, services
from sessions_app.errors import ApiError, BadRequest, Conflict, NotFound
from sessions_app.models import Session
from sessions_app.setup import TEMPLATES
from workshops.models import Seat, Workshop, hash_secret

log = logging.getLogger(__name__)

WORKSHOP_NOT_FOUND = "There is no such workshop, or you do not run it."
DEFAULT_LENGTH = timedelta(hours=2)
MAX_NAME = 80
MAX_MESSAGE = 500
NOT_READY_RETRY_AFTER = 5


class WorkshopEnded(ApiError):
    status = 410
    code = "workshop_ended"


class SeatsNotReady(ApiError):
    """Seats are still being made: the trainee's page retries after Retry-After."""

    status = 503
    code = "seats_not_ready"


@dataclass(frozen=True)
class Plan:
    """A validated workshop request."""

    title: str
    seats: int
    nodes_per_seat: int
    template: str
    image: str
    starts_at: datetime | None
    ends_at: datetime


def plan_of(data: dict[str, Any], now: datetime | None = None) -> Plan:
    """Check a creation request (the schema has typed it); BadRequest says what is wrong."""
    now = now or timezone.now()
    title = (data.get("title") or "").strip()
    if not title or len(title) > 200:
        raise BadRequest("title: give the workshop a title of 1 to 200 characters.")
    seats = data["seats"]
    if not 1 <= seats <= settings.PWD_WORKSHOP_MAX_SEATS:
        raise BadRequest(f"seats: between 1 and {settings.PWD_WORKSHOP_MAX_SEATS}.")
    template = data.get("template") or ""
    nodes = data.get("nodes_per_seat")
    if template and nodes is not None:
        raise BadRequest("Give nodes_per_seat or template, not both.")
    if template:
        if template not in TEMPLATES:
            names = ", ".join(TEMPLATES)
            raise BadRequest(f"template: no template {template[:40]!r}; use one of {names}.")
        nodes = len(TEMPLATES[template])
    nodes = 1 if nodes is None else nodes
    if not 1 <= nodes <= settings.PWD_MAX_NODES:
        raise BadRequest(f"nodes_per_seat: between 1 and {settings.PWD_MAX_NODES}.")
    image = services.allowed_image(data.get("image"))
    starts_at, ends_at = data.get("starts_at"), data.get("ends_at")
    if ends_at is None:
        ends_at = max(starts_at or now, now) + DEFAULT_LENGTH
    if ends_at <= now:
        raise BadRequest("ends_at: the end must be in the future.")
    if starts_at is not None and starts_at >= ends_at:
        raise BadRequest("starts_at: the start must come before ends_at.")
    longest = timedelta(seconds=settings.PWD_WORKSHOP_MAX_LENGTH)
    if ends_at - now > longest:
        raise BadRequest(f"ends_at: a workshop may last at most {longest} from now.")
    return Plan(title, seats, nodes, template, image, starts_at, ends_at)


def promised(exclude: Workshop | None = None) -> tuple[int, int]:
    """Nodes and sessions that running workshops' seats will start but have not yet:
    the capacity they hold although nothing runs yet."""
    seats = Seat.objects.filter(workshop__in=Workshop.objects.running()).filter(
        Q(status=Seat.Status.WAITING)
        | Q(status=Seat.Status.PROVISIONING, session__isnull=True)
        | Q(status=Seat.Status.FAILED, retry_at__isnull=False)
    )
    if exclude is not None:
        seats = seats.exclude(workshop=exclude)
    rows = list(seats.select_related("workshop"))
    return sum(seat.workshop.nodes_wanted for seat in rows), len(rows)


def capacity_for(workshop: Workshop) -> dict[str, Any]:
    """How many of the workshop's seats fit (those made, and of the rest as many as the
    installation can hold after other workshops' promised seats), and the warning."""
    from sessions_app import capacity

    unmade = workshop.seat_set.exclude(status__in=[Seat.Status.READY, Seat.Status.TAKEN]).count()
    made = workshop.seats - unmade
    nodes, sessions = promised(exclude=workshop)
    try:
        fit = capacity.seats_that_fit(
            workshop.nodes_wanted, reserved_nodes=nodes, reserved_sessions=sessions
        )
    except engine.EngineError:
        return {
            "seats_that_fit": made,
            "seats": workshop.seats,
            "warning": "The Docker engine does not answer, so capacity could not be checked; "
            "seats are made once it is back.",
        }
    fits = made + min(unmade, fit)
    warning = ""
    if fits < workshop.seats:
        each = f"{workshop.nodes_wanted} node{'s' if workshop.nodes_wanted != 1 else ''} each"
        warning = (
            f"This installation can hold {fits} of your {workshop.seats} seats ({each}) "
            "right now; ask an operator for more capacity, or make fewer seats."
        )
    return {"seats_that_fit": fits, "seats": workshop.seats, "warning": warning}


def create(user: Any, plan: Plan) -> Workshop:
    """The workshop, its instructor and its seat rows (waiting for the provisioner)."""
    with transaction.atomic():
        workshop = Workshop.objects.create(
            title=plan.title,
            seats=plan.seats,
            nodes_per_seat=plan.nodes_per_seat,
            template=plan.template,
            image=plan.image,
            starts_at=plan.starts_at,
            ends_at=plan.ends_at,
            created_by=user,
        )
        workshop.instructors.add(user)
        Seat.objects.bulk_create(
            Seat(workshop=workshop, number=n) for n in range(1, plan.seats + 1)
        )
    log.info("workshop %s: %d seat(s) by %s", workshop.pk, plan.seats, user)
    return workshop


def run_by(user: Any, workshop_id: Any) -> Workshop:
    """A workshop ``user`` is an instructor of; NotFound otherwise (ended ones too)."""
    found = Workshop.objects.of_instructor(user).filter(pk=workshop_id).first()
    if found is None:
        raise NotFound(WORKSHOP_NOT_FOUND, "workshop_not_found")
    return found


# --- joining ------------------------------------------------------------------------


def clean_name(raw: object) -> str:
    if not isinstance(raw, str):
        raise BadRequest("name: give your name, as the instructor will see it.", "invalid_name")
    name = " ".join(raw.split())
    if not name or len(name) > MAX_NAME:
        raise BadRequest(f"name: 1 to {MAX_NAME} characters.", "invalid_name")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise BadRequest("name: letters, digits and punctuation only.", "invalid_name")
    return name


def find_by_code(code: str) -> Workshop:
    normalised = code.strip().upper()
    found = Workshop.objects.filter(join_code=normalised).first() if normalised.isalnum() else None
    if found is None:
        raise NotFound(
            "There is no workshop with that code; check it with your instructor.",
            "workshop_not_found",
        )
    if not found.is_running():
        raise WorkshopEnded(f"The workshop {found.title!r} has ended.")
    return found


@dataclass(frozen=True)
class Joined:
    seat: Seat
    key: str  # the browser's seat key (a cookie), new or as it came
    rejoined: bool


def join(workshop: Workshop, name: object, key: str | None) -> Joined:
    """A ready seat of ``workshop`` (from :func:`find_by_code`) for a trainee, or the
    one this browser (``key``) already has.

    Raises Conflict ``workshop_full`` when every seat is taken, SeatsNotReady while
    seats are still being made.
    """
    if key:
        mine = (
            Seat.objects.filter(workshop=workshop, trainee_key=hash_secret(key))
            .select_related("session")
            .first()
        )
        if mine is not None and mine.session is not None and mine.session.is_active():
            return Joined(mine, key, rejoined=True)
    trainee = clean_name(name)
    key = secrets.token_urlsafe(24)
    now = timezone.now()
    for seat_id in Seat.objects.filter(workshop=workshop, status=Seat.Status.READY).values_list(
        "pk", flat=True
    )[:20]:
        taken = Seat.objects.filter(pk=seat_id, status=Seat.Status.READY).update(
            status=Seat.Status.TAKEN,
            trainee_name=trainee,
            trainee_key=hash_secret(key),
            taken_at=now,
        )
        if taken:
            seat = Seat.objects.select_related("session").get(pk=seat_id)
            if seat.session is not None:
                seat.session.touch(now)
            return Joined(seat, key, rejoined=False)
    if workshop.seat_set.exclude(status=Seat.Status.TAKEN).exists():
        raise SeatsNotReady(
            "Your seat is still being made; this page tries again in a few seconds.",
            retry_after=NOT_READY_RETRY_AFTER,
        )
    raise Conflict(
        f"All {workshop.seats} seats of {workshop.title!r} are taken; ask your instructor.",
        "workshop_full",
    )


# --- the instructor's actions -------------------------------------------------------


def seat_sessions(workshop: Workshop) -> list[Session]:
    return list(Session.objects.active().filter(seat__workshop=workshop))


def extend_all(workshop: Workshop) -> datetime:
    """Move the workshop's end by PWD_WORKSHOP_EXTEND, with every seat's session."""
    if not workshop.is_running():
        raise WorkshopEnded(f"The workshop {workshop.title!r} has ended.")
    longest = timezone.now() + timedelta(seconds=settings.PWD_WORKSHOP_MAX_LENGTH)
    new_end = workshop.ends_at + timedelta(seconds=settings.PWD_WORKSHOP_EXTEND)
    if new_end > longest:
        raise Conflict(
            "The workshop is at its longest (PWD_WORKSHOP_MAX_LENGTH from now).", "at_maximum"
        )
    with transaction.atomic():
        Workshop.objects.filter(pk=workshop.pk).update(ends_at=new_end)
        Session.objects.active().filter(seat__workshop=workshop).update(
            ends_at=new_end, expiry_warned_at=None
        )
    workshop.ends_at = new_end
    return new_end


async def publish_to_seats(workshop: Workshop, event: dict[str, Any]) -> int:
    ids = await sync_to_async(
        lambda: list(
            Session.objects.active().filter(seat__workshop=workshop).values_list("pk", flat=True)
        )
    )()
    for session_id in ids:
        await events.publish(session_id, event)
    return len(ids)


async def end(workshop: Workshop) -> None:
    """End the workshop and every seat's session (their nodes and networks go)."""
    await sync_to_async(workshop.end)()
    sessions = await sync_to_async(
        lambda: list(Session.objects.filter(seat__workshop=workshop, ended_at__isnull=True))
    )()
    # Together: each end may wait for its engine removal (PWD_REMOVAL_WAIT).
    ended = await asyncio.gather(
        *(services.end_session(s, reason="workshop_ended") for s in sessions),
        return_exceptions=True,
    )
    for session, result in zip(sessions, ended, strict=True):
        if isinstance(result, Exception):  # the reaper finishes what is left
            log.warning("ending %s of workshop %s: %s", session, workshop.pk, result)


async def broadcast(workshop: Workshop, text: str) -> int:
    """Show ``text`` on every trainee's page (and to those who join later)."""
    if not workshop.is_running():
        raise WorkshopEnded(f"The workshop {workshop.title!r} has ended.")
    text = " ".join(text.split())
    if len(text) > MAX_MESSAGE:
        raise BadRequest(f"text: at most {MAX_MESSAGE} characters.")
    now = timezone.now()
    await Workshop.objects.filter(pk=workshop.pk).aupdate(message=text, message_at=now)
    workshop.message = text
    return await publish_to_seats(workshop, {"type": "workshop.message", "text": text})
