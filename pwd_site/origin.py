"""Websocket handshake checks: a Host from ALLOWED_HOSTS, and an exact Origin.

Django checks Host against ALLOWED_HOSTS for HTTP only; Channels does not, so a
websocket would answer to any name that points at the server (DNS rebinding). A browser
always sends Origin on a websocket handshake; a page on another origin (for example one
served from a trainee's node) must not drive someone's terminal. Allowed: the app's own
origin (same scheme, and the Origin's host equals the Host header), and the exact
``scheme://host[:port]`` values in PWD_TRUSTED_ORIGINS, never wildcards. Clients that
send no Origin (command-line tools, the benchmarks) are not browsers and are let
through. A refused handshake is answered HTTP 403.
"""

import re
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def host_allowed(host: str | None) -> bool:
    """Whether ``host`` (a Host header) names this site, as Django decides for HTTP.

    None (no header) passes: daphne refuses such a handshake itself, as HTTP/1.1 does,
    so only in-process callers (tests) get here without one.
    """
    if host is None:
        return True
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed)


def site_scheme(scope: dict[str, Any]) -> str:
    """``https`` or ``http``: how the browser reached the site, as Django would say.

    Behind a TLS-terminating proxy that is its SECURE_PROXY_SSL_HEADER (production);
    otherwise the scheme of the connection itself.
    """
    if settings.SECURE_PROXY_SSL_HEADER:
        name, secure = settings.SECURE_PROXY_SSL_HEADER
        header = name.removeprefix("HTTP_").replace("_", "-").lower().encode()
        value = _header(scope, header)
        if value is not None:
            return "https" if value.split(",")[0].strip() == secure else "http"
    return "https" if scope.get("scheme") in {"wss", "https"} else "http"


def origin_allowed(origin: str | None, host: str | None, scheme: str = "http") -> bool:
    """Whether a handshake with this Origin (and Host) header may proceed on a site
    reached over ``scheme``."""
    if origin is None:
        return True
    origin = origin.strip().lower().rstrip("/")
    if origin in {o.strip().lower().rstrip("/") for o in settings.PWD_TRUSTED_ORIGINS}:
        return True
    parts = urlsplit(origin)
    if parts.scheme != scheme or not parts.netloc:
        return False
    return host is not None and parts.netloc == host.strip().lower()


def embed_origin_allowed(origin: str | None) -> bool:
    """Whether ``origin`` is exactly one of PWD_EMBED_ORIGINS (never a suffix match)."""
    if not origin:
        return False
    wanted = origin.strip().lower().rstrip("/")
    return wanted in {o.strip().lower().rstrip("/") for o in settings.PWD_EMBED_ORIGINS}


# The native embed's websockets (static/pwd/embed.js): its nodes' terminals.
EMBED_TERMINAL = re.compile(r"^/ws/sessions/[^/]+/nodes/[^/]+/terminal/$")


class OriginCheck:
    """ASGI middleware refusing websocket handshakes for a foreign Host or Origin.

    Under ``embed_prefixes`` (paths documentation pages open from their own origin) and
    on the native embed's terminals (EMBED_TERMINAL) the PWD_EMBED_ORIGINS are allowed
    too."""

    def __init__(self, application: Any, embed_prefixes: tuple[str, ...] = ()) -> None:
        self.application = application
        self.embed_prefixes = embed_prefixes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket":
            host = _header(scope, b"host")
            origin = _header(scope, b"origin")
            path = scope.get("path", "")
            embed = EMBED_TERMINAL.match(path) is not None or (
                bool(self.embed_prefixes) and path.startswith(self.embed_prefixes)
            )
            allowed = origin_allowed(origin, host, site_scheme(scope)) or (
                embed and embed_origin_allowed(origin)
            )
            if not (host_allowed(host) and allowed):
                return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
