"""The swarm setup operation (docs/api.md): a template or a plan, then the session."""

from typing import Any

from django.http import HttpRequest
from ninja import Router

from sessions_app import schemas, services, setup
from sessions_app.schemas_setup import SetupRequest
from sessions_app.serialize import session_data

router = Router()

Error = schemas.Error


@router.post(
    "/sessions/{session_id}/setup/",
    response={
        200: schemas.Session,
        400: Error,
        403: Error,
        404: Error,
        409: Error,
        413: Error,
        429: Error,
        502: Error,
        503: Error,
    },
    operation_id="setupSession",
    summary="Start an empty session's nodes from a template or a plan and form their swarm",
    description=(
        "Answers once `docker node ls` on the first manager shows every node Ready in its "
        "planned role and each node's `run` commands have run. 400 unknown_template, 400 "
        "invalid_request for a bad plan, 409 session_not_empty or setup_in_progress, 502 "
        "setup_failed (after removing the nodes it made)."
    ),
)
async def setup_session(
    request: HttpRequest, session_id: str, payload: SetupRequest
) -> dict[str, Any]:
    plan = payload.plan()
    session = await services.active_session(session_id)
    return session_data(session, await setup.set_up(session, plan))
