"""The session's time: extending it (documented in docs/api.md and at /api/schema/)."""

from typing import Any

from django.http import HttpRequest
from ninja import Router

from sessions_app import schemas, session_time
from sessions_app.serialize import session_data

router = Router()

Error = schemas.Error
NO_FIELDS = schemas.NewSession()


@router.post(
    "/sessions/{session_id}/extend/",
    response={200: schemas.Session, 400: Error, 403: Error, 404: Error, 409: Error, 413: Error},
    operation_id="extendSession",
    summary="Push the idle limit back; the hard end never moves",
    description="409 at_maximum, changing nothing, when the idle limit already reaches "
    "the hard end (hard_expires_at).",
)
async def extend_session(
    request: HttpRequest, session_id: str, payload: schemas.NewSession = NO_FIELDS
) -> dict[str, Any]:
    return session_data(*await session_time.extend(session_id))
