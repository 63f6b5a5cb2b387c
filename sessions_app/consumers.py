"""The events websocket: every viewer of a session hears what happens to it."""

import contextlib
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from sessions_app import events, portwatch
from sessions_app import stats as live_stats
from sessions_app.models import Session

# Closing codes in the 4000 range are ours; 4404 and 4503 mirror HTTP's statuses.
CLOSE_NOT_FOUND = 4404
CLOSE_UNAVAILABLE = 4503

log = logging.getLogger(__name__)


@database_sync_to_async
def _active_session(session_id: str) -> Session | None:
    session = Session.objects.active().filter(pk=session_id).first()
    if session is not None:
        session.touch()
    return session


def _is_layer_outage(exc: BaseException) -> bool:
    """A failure of the channel layer's backend (Redis down), not a bug of ours."""
    return type(exc).__module__.split(".")[0] in {"redis", "channels_redis"}


class EventsConsumer(AsyncJsonWebsocketConsumer):
    """Authorises in ``connect`` (knowing the session id is the credential), then
    forwards the session's group messages; it never reads from the client."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Channels also listens on the layer for this consumer's own channel; with Redis
        # down that listener fails too, after or before connect() has told the client.
        # The socket is closed with 4503 so that the viewer reconnects (left open, it
        # would hear nothing more, unawares); a warning is all the log needs.
        try:
            await super().__call__(scope, receive, send)
        except Exception as exc:
            if not _is_layer_outage(exc):
                raise
            log.warning("events websocket ended: the channel layer is unavailable: %s", exc)
            with contextlib.suppress(Exception):  # the client may have gone already
                await send({"type": "websocket.close", "code": CLOSE_UNAVAILABLE})
        finally:
            # Ended that way, the socket never hears disconnect(): stop its stats too.
            if self.session_id:
                live_stats.unwatch(self.session_id, self.channel_name)

    session_id: str = ""

    async def connect(self) -> None:
        session_id = self.scope["url_route"]["kwargs"]["session_id"]
        await self.accept()
        if await _active_session(session_id) is None:
            await self._refuse(
                "session_not_found", "There is no such session, or it has ended.", CLOSE_NOT_FOUND
            )
            return
        try:
            await self.channel_layer.group_add(events.group_name(session_id), self.channel_name)
        except Exception as exc:  # noqa: BLE001 - the layer (Redis) is down; say so, no crash
            log.warning(
                "events of session %s: the channel layer is unavailable: %s", session_id[:6], exc
            )
            await self._refuse(
                "events_unavailable",
                "Live updates are unavailable for a moment; reconnect shortly.",
                CLOSE_UNAVAILABLE,
            )
            return
        self.session_id = session_id
        live_stats.watch(session_id, self.channel_name, self.send_json)
        portwatch.join(session_id)

    async def _refuse(self, code: str, message: str, close_code: int) -> None:
        """Tell the client why, in the API's error shape, then close."""
        await self.send_json({"type": "error", "error": {"code": code, "message": message}})
        await self.close(code=close_code)

    async def disconnect(self, code: int) -> None:
        if self.session_id:
            live_stats.unwatch(self.session_id, self.channel_name)
            portwatch.leave(self.session_id)
            with contextlib.suppress(Exception):  # the layer may be down; membership expires
                await self.channel_layer.group_discard(
                    events.group_name(self.session_id), self.channel_name
                )

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        """Viewers only listen; anything they send is ignored, unread: a binary frame, a
        frame that is not JSON or is nested too deeply never ends the stream."""

    async def session_event(self, message: dict[str, Any]) -> None:
        event = message["event"]
        portwatch.on_event(self.session_id, event)
        await self.send_json(event)
        if event.get("type") in live_stats.NODE_EVENTS:
            live_stats.nodes_changed(self.session_id)
        if event.get("type") == "session.ended":
            await self.close(code=1000)
