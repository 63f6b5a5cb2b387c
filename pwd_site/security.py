"""Response headers that keep the app's pages to themselves.

Every response gets a Content-Security-Policy: scripts only from the app's own origin
(no inline script), connections only back to it (HTTP and its websockets), nothing may
frame it. Styles may be inline because xterm.js styles its rows at run time. Django's
own middleware adds X-Frame-Options DENY, Referrer-Policy same-origin and nosniff (see
settings.py). Answers that carry a session id (its page, the session API, the start
form's redirect) are never stored by a browser or a proxy. A view meant to be framed by
documentation sites is wrapped in :func:`embeddable`, which lets exactly the
PWD_TRUSTED_ORIGINS and PWD_EMBED_ORIGINS frame it. Answers made outside Django take
:func:`standalone_headers`.
"""

import functools
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers
from django.utils.deprecation import MiddlewareMixin
from django.views.decorators.clickjacking import xframe_options_exempt

HEADER = "Content-Security-Policy"
# Paths whose answers carry a session id, the credential.
PRIVATE_PATHS = ("/p/", "/api/sessions/", "/start/")


def content_security_policy(host: str, frame_ancestors: list[str] | None = None) -> str:
    """The policy for a page served as ``host``; ``frame_ancestors`` None forbids framing."""
    # 'self' covers ws:/wss: of the same host in CSP 3, but older Safari wants them spelt
    # out.
    ancestors = " ".join(["'self'", *frame_ancestors]) if frame_ancestors is not None else "'none'"
    directives = [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        f"connect-src 'self' ws://{host} wss://{host}",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        f"frame-ancestors {ancestors}",
    ]
    return "; ".join(directives)


def standalone_headers() -> dict[str, str]:
    """The headers for an answer made without Django's middleware (a refused body)."""
    return {
        HEADER: "default-src 'none'; frame-ancestors 'none'",
        "X-Frame-Options": settings.X_FRAME_OPTIONS,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": settings.SECURE_REFERRER_POLICY,
        "Cache-Control": "no-store",
    }


class SecurityHeadersMiddleware(MiddlewareMixin):
    """Adds the Content-Security-Policy (a view may have set its own already), and
    ``Cache-Control: no-store`` to the answers of PRIVATE_PATHS."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if request.path.lower().startswith(PRIVATE_PATHS):
            add_never_cache_headers(response)
        if HEADER not in response:
            try:
                host = request.get_host()
            except Exception:  # noqa: BLE001 - a disallowed Host still gets a policy
                host = "invalid"
            embeddable = getattr(response, "pwd_embeddable", False)
            ancestors = embed_ancestors() if embeddable else None
            response[HEADER] = content_security_policy(host, ancestors)
        return response


def embed_ancestors() -> list[str]:
    """Who may frame an embeddable page: PWD_TRUSTED_ORIGINS and PWD_EMBED_ORIGINS."""
    return list(dict.fromkeys([*settings.PWD_TRUSTED_ORIGINS, *settings.PWD_EMBED_ORIGINS]))


def embeddable(view: Callable[..., Any]) -> Callable[..., Any]:
    """Let the app's own pages and :func:`embed_ancestors` frame this view's pages.

    Everything else stays unframeable (X-Frame-Options DENY, frame-ancestors 'none').
    Works for sync and async views.
    """

    def mark(response: HttpResponse) -> HttpResponse:
        response.pwd_embeddable = True  # type: ignore[attr-defined]
        return response

    if iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(*args: Any, **kwargs: Any) -> HttpResponse:
            return mark(await view(*args, **kwargs))

        return xframe_options_exempt(async_wrapper)

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> HttpResponse:
        return mark(view(*args, **kwargs))

    return xframe_options_exempt(wrapper)
