"""Websocket Origin check: exact origins only, never wildcards.

A browser always sends Origin on a websocket handshake; a page on another origin (for
example one served from a trainee's node) must not drive someone's terminal. Allowed:
the app's own origin (the Origin's host equals the Host header), and the exact
``scheme://host[:port]`` values in PWD_TRUSTED_ORIGINS. Clients that send no Origin
(command-line tools, the benchmarks) are not browsers and are let through.
"""

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def origin_allowed(origin: str | None, host: str | None) -> bool:
    """Whether a handshake with this Origin (and Host) header may proceed."""
    if origin is None:
        return True
    origin = origin.strip().lower().rstrip("/")
    if origin in {o.strip().lower().rstrip("/") for o in settings.PWD_TRUSTED_ORIGINS}:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        return False
    return host is not None and parts.netloc == host.strip().lower()


class OriginCheck:
    """ASGI middleware refusing websocket handshakes from foreign origins (HTTP 403)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(
            _header(scope, b"origin"), _header(scope, b"host")
        ):
            denier = WebsocketDenier()
            return await denier(scope, receive, send)
        return await self.application(scope, receive, send)
