"""Helpers of the workshop tests: instructors, trainees, tokens and seats."""

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import AsyncClient
from django.utils import timezone

from sessions_app.models import Session
from workshops.models import ApiToken, Seat, Workshop

PASSWORD = "correct horse battery staple"


def make_user(name: str, instructor: bool = True) -> Any:
    user = get_user_model().objects.create_user(name, password=PASSWORD)
    if instructor:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="workshops", codename="instruct")
        )
    return user


def token_for(user: Any) -> str:
    return ApiToken.issue(user)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


def seat_ready(seat: Seat) -> Session:
    """Mark a seat ready with a session row of its own (for tests of the rules only:
    no network or node on the engine)."""
    session = Session.objects.create(ends_at=seat.workshop.ends_at)
    Seat.objects.filter(pk=seat.pk).update(
        status=Seat.Status.READY, session=session, ready_at=timezone.now()
    )
    return session


def workshop_of(user: Any, seats: int = 2, **fields: Any) -> Workshop:
    workshop = Workshop.objects.create(
        title=fields.pop("title", "Swarm 101"),
        seats=seats,
        image=fields.pop("image", "pwd-node:latest"),
        ends_at=fields.pop("ends_at", timezone.now() + timedelta(hours=2)),
        created_by=user,
        **fields,
    )
    workshop.instructors.add(user)
    Seat.objects.bulk_create(Seat(workshop=workshop, number=n) for n in range(1, seats + 1))
    return workshop


async def join(client: AsyncClient, code: str, name: Any = "Ada") -> Any:
    import json

    return await client.post(
        f"/api/workshops/join/{code}/", json.dumps({"name": name}), content_type="application/json"
    )
