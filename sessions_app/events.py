"""Session events for every viewer of a session, through the channel layer.

Any process can publish (the reaper is a separate one); with the in-memory layer only
websockets served by the publishing process receive them, so production sets REDIS_URL.
Publishing is best effort: a failure is logged, never raised into the caller's work.
"""

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

# The consumer method a group message lands in (dots become underscores).
MESSAGE_TYPE = "session.event"


def group_name(session_id: str) -> str:
    """The channel-layer group of a session's viewers (ids are URL-safe, so valid here)."""
    return f"session.{session_id}"


async def publish(session_id: str, event: dict[str, Any]) -> None:
    """Send ``event`` (a JSON-able dict with a ``type``) to every viewer of the session."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(group_name(session_id), {"type": MESSAGE_TYPE, "event": event})
    except Exception:  # noqa: BLE001 - events are best effort; the work itself succeeded
        log.warning("could not publish %s to session %s", event.get("type"), session_id[:6])


def publish_sync(session_id: str, event: dict[str, Any]) -> None:
    """:func:`publish` for synchronous code such as the reaper (not from an event loop)."""
    async_to_sync(publish)(session_id, event)
