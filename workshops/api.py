"""The workshop API (docs/api.md, "Workshops"): instructors' operations, and join.

Instructors authenticate with their login session (with CSRF) or ``Authorization: Token
<token>`` (workshops.auth); joining needs only the code.
"""

from __future__ import annotations

import uuid
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from ninja import Router, Status

from sessions_app import schemas as session_schemas
from sessions_app.serialize import session_data
from terminals import warm
from workshops import schemas, services
from workshops.auth import instructor
from workshops.models import Seat
from workshops.serialize import workshop_data

router = Router(tags=["workshops"])
Error = session_schemas.Error
AUTH_ERRORS = {401: Error, 403: Error, 404: Error}
COOKIE_PREFIX = "pwd_seat_"


def _workshop_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise services.NotFound(services.WORKSHOP_NOT_FOUND, "workshop_not_found") from None


async def _mine(request: HttpRequest, workshop_id: str) -> tuple[Any, Any]:
    user = await instructor(request)
    found = await sync_to_async(services.run_by)(user, _workshop_id(workshop_id))
    return user, found


@router.post(
    "/workshops/",
    response={201: schemas.Workshop, 400: Error, 401: Error, 403: Error, 413: Error},
    operation_id="createWorkshop",
    summary="Create a workshop; its seats are made in the background",
)
async def create_workshop(request: HttpRequest, payload: schemas.NewWorkshop) -> Status:
    user = await instructor(request)
    plan = services.plan_of(payload.model_dump())
    workshop = await sync_to_async(services.create)(user, plan)
    data = await sync_to_async(workshop_data)(workshop, request)
    data["capacity"] = await sync_to_async(services.capacity_for)(workshop)
    return Status(201, data)


@router.get(
    "/workshops/",
    response={200: list[schemas.WorkshopSummary], 401: Error, 403: Error},
    operation_id="listWorkshops",
    summary="The workshops you run, newest first",
)
async def list_workshops(request: HttpRequest) -> list[dict[str, Any]]:
    user = await instructor(request)

    def rows() -> list[dict[str, Any]]:
        from workshops.models import Workshop

        return [
            {
                "id": str(w.pk),
                "title": w.title,
                "join_code": w.join_code,
                "seats": w.seats,
                "ends_at": w.ends_at,
                "ended": not w.is_running(),
            }
            for w in Workshop.objects.of_instructor(user)[:200]
        ]

    return await sync_to_async(rows)()


@router.get(
    "/workshops/{workshop_id}/",
    response={200: schemas.Workshop, **AUTH_ERRORS},
    operation_id="getWorkshop",
    summary="A workshop and its roster: every seat's state, trainee, nodes and time left",
)
async def get_workshop(request: HttpRequest, workshop_id: str) -> dict[str, Any]:
    _, found = await _mine(request, workshop_id)
    return await sync_to_async(workshop_data)(found, request)


@router.delete(
    "/workshops/{workshop_id}/",
    response={204: None, **AUTH_ERRORS},
    operation_id="endWorkshop",
    summary="End the workshop and remove every seat's nodes",
)
async def end_workshop(request: HttpRequest, workshop_id: str) -> Status:
    _, found = await _mine(request, workshop_id)
    await services.end(found)
    return Status(204, None)


@router.post(
    "/workshops/{workshop_id}/extend/",
    response={200: schemas.Workshop, 409: Error, 410: Error, **AUTH_ERRORS},
    operation_id="extendWorkshop",
    summary="Move the end of the workshop and of every seat by PWD_WORKSHOP_EXTEND",
)
async def extend_workshop(request: HttpRequest, workshop_id: str) -> dict[str, Any]:
    _, found = await _mine(request, workshop_id)
    await sync_to_async(services.extend_all)(found)
    await services.publish_to_seats(
        found, {"type": "workshop.extended", "ends_at": found.ends_at.isoformat()}
    )
    return await sync_to_async(workshop_data)(found, request)


@router.post(
    "/workshops/{workshop_id}/message/",
    response={200: schemas.Sent, 400: Error, 410: Error, **AUTH_ERRORS},
    operation_id="messageWorkshop",
    summary="Show a message on every trainee's page (empty text clears it)",
)
async def message_workshop(
    request: HttpRequest, workshop_id: str, payload: schemas.Message
) -> dict[str, int]:
    _, found = await _mine(request, workshop_id)
    sent = await services.broadcast(found, payload.text)
    return {"sent": sent}


@router.post(
    "/workshops/join/{join_code}/",
    response={
        200: schemas.JoinedSeat,
        201: schemas.JoinedSeat,
        400: Error,
        404: Error,
        409: Error,
        410: Error,
        413: Error,
        503: Error,
    },
    operation_id="joinWorkshop",
    summary="Take a ready seat (the same browser rejoining gets its seat again)",
    description="201 with the seat's session; 200 when this browser already has a seat. "
    "404 workshop_not_found, 410 workshop_ended, 409 workshop_full, 503 seats_not_ready "
    "(Retry-After) while seats are still being made, 400 invalid_name.",
)
async def join_workshop(
    request: HttpRequest, join_code: str, payload: schemas.Join, response: HttpResponse
) -> Status:
    workshop = await sync_to_async(services.find_by_code)(join_code[:32])
    cookie = COOKIE_PREFIX + workshop.pk.hex
    joined = await sync_to_async(services.join)(workshop, payload.name, request.COOKIES.get(cookie))
    response.set_cookie(
        cookie,
        joined.key,
        max_age=int((workshop.ends_at - workshop.created_at).total_seconds()) + 86400,
        httponly=True,
        samesite="Lax",
        secure=settings.SESSION_COOKIE_SECURE,
    )
    data, first_node = await sync_to_async(_joined_data)(joined.seat)
    if first_node:
        # The session page opens on node1: its terminal attaches while the page loads.
        warm.soon(first_node)
    return Status(200 if joined.rejoined else 201, data)


def _joined_data(seat: Seat) -> tuple[dict[str, Any], str]:
    """The seat's session as the API shows it, and its first node's container."""
    session = seat.session
    assert session is not None
    nodes = list(session.nodes.exclude(status="gone"))
    data = session_data(session, nodes)
    data.update(seat=seat.number, workshop=seat.workshop.title, trainee_name=seat.trainee_name)
    return data, next((n.container_id for n in nodes if n.container_id), "")
