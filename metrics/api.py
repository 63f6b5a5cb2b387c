"""GET /api/capacity/ (docs/api.md, "Capacity")."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from ninja import Query, Router

from metrics import access, schemas
from sessions_app import capacity
from sessions_app.errors import ApiError, BadRequest
from sessions_app.schemas import Error

router = Router(tags=["capacity"])


@router.get(
    "/capacity/",
    response={200: schemas.Capacity, 400: Error, 403: Error, 503: Error},
    operation_id="getCapacity",
    url_name="capacity",
    summary="Hosts, nodes used and free, sessions, and how many more seats fit",
)
async def get_capacity(
    request: HttpRequest,
    # At least 1, in the schema too; more than PWD_MAX_NODES fits 0 seats (no session
    # may have that many), an answer rather than an error.
    nodes_per_seat: int = Query(1, ge=1),
) -> dict[str, Any]:
    if not await access.may_see_capacity(request):
        raise ApiError(
            "Capacity is shown to PWD_METRICS_ALLOW addresses and staff users.", "forbidden", 403
        )
    if nodes_per_seat < 1:
        raise BadRequest("nodes_per_seat must be 1 or more.", "bad_nodes_per_seat")
    return await sync_to_async(capacity.snapshot)(nodes_per_seat)
