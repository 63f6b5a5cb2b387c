"""Open websockets of this process, counted around the websocket router."""

from __future__ import annotations

from typing import Any

from metrics.registry import WEBSOCKETS_OPEN

KINDS = ("terminal", "events", "compat")
for _kind in KINDS:
    WEBSOCKETS_OPEN.labels(_kind)


def kind_of(path: str) -> str:
    if path.endswith("/terminal/"):
        return "terminal"
    if path.endswith("/events/"):
        return "events"
    return "compat"


class CountOpenSockets:
    """ASGI middleware: a socket counts from its accept until its consumer returns
    (after the disconnect), whatever way the consumer ends."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        gauge = WEBSOCKETS_OPEN.labels(kind_of(scope.get("path", "")))
        accepted = False

        async def counting_send(message: dict[str, Any]) -> None:
            nonlocal accepted
            await send(message)
            if message["type"] == "websocket.accept" and not accepted:
                accepted = True
                gauge.inc()

        try:
            return await self.app(scope, receive, counting_send)
        finally:
            if accepted:
                gauge.dec()
