"""Extending a session: the idle limit moves on, the hard maximum never does."""

from asgiref.sync import sync_to_async

from sessions_app import events
from sessions_app.errors import Conflict, NotFound
from sessions_app.models import Node, Session
from sessions_app.serialize import timestamp
from sessions_app.services import SESSION_NOT_FOUND


async def extend(session_id: str) -> tuple[Session, list[Node]]:
    """Push the session's idle limit back and tell every viewer (``session.extended``).

    Returns the session and its nodes. Raises NotFound for an unknown or ended session,
    Conflict (``at_maximum``) when the idle limit already reaches the hard end: then
    nothing changes, not even the time of last activity.
    """
    session = await Session.objects.active().filter(pk=session_id).afirst()
    if session is None:
        raise NotFound(SESSION_NOT_FOUND, "session_not_found")
    if not await sync_to_async(session.extend)():
        if session.at_maximum():
            hard_end = timestamp(session.hard_expires_at)
            raise Conflict(
                f"This session already runs until its hard end, {hard_end}; it cannot be extended.",
                "at_maximum",
            )
        raise NotFound(SESSION_NOT_FOUND, "session_not_found")
    await events.publish(
        session.id, {"type": "session.extended", "expires_at": timestamp(session.expires_at)}
    )
    return session, [node async for node in session.nodes.all()]
