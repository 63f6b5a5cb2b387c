"""CORS as the PWD SDK needs it, the refusal of foreign origins, and error answers.

Allowed origins are the exact values of PWD_EMBED_ORIGINS (never a suffix: PWD's suffix
check let ``evil-play-with-docker.com`` in). An allowed Origin is echoed with
credentials; a preflight answers 200 with the requested headers in canonical form. The
routes are exempt from CSRF (the SDK posts cross-origin with its cookie), so a
state-changing request whose Origin is neither allowed nor the site's own is refused.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.csrf import csrf_exempt

from pwd_compat.wire import json_response
from pwd_site.origin import embed_origin_allowed, origin_allowed
from sessions_app import engine
from sessions_app.errors import ApiError

log = logging.getLogger(__name__)

PREFLIGHT_METHODS = {"GET", "POST", "HEAD", "DELETE"}
SIMPLE_METHODS = {"GET", "POST", "HEAD"}
ALLOWED_HEADERS = {
    "x-requested-with",
    "content-type",
    "accept",
    "accept-language",
    "content-language",
}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

View = Callable[..., Awaitable[HttpResponse]]


def error(status: int, code: str, message: str) -> HttpResponse:
    return json_response({"error": {"code": code, "message": message}}, status)


def _canonical(header: str) -> str:
    return "-".join(part.capitalize() for part in header.strip().split("-"))


def preflight(request: HttpRequest) -> HttpResponse:
    """An OPTIONS request from an allowed origin, answered as PWD's CORS layer does."""
    method = request.headers.get("Access-Control-Request-Method", "").strip()
    if not method:
        return error(400, "bad_preflight", "A preflight needs Access-Control-Request-Method.")
    if method.upper() not in PREFLIGHT_METHODS:
        return error(405, "method_not_allowed", f"{method[:20]} is not allowed here.")
    requested = request.headers.get("Access-Control-Request-Headers", "").split(",")
    asked = [h.strip() for h in requested if h.strip()]
    refused = [h for h in asked if h.lower() not in ALLOWED_HEADERS]
    if refused:
        return error(403, "header_not_allowed", f"The header {refused[0][:40]} is not allowed.")
    response = HttpResponse(b"", status=200)
    if asked:
        response["Access-Control-Allow-Headers"] = ",".join(_canonical(h) for h in asked)
    if method.upper() not in SIMPLE_METHODS:
        response["Access-Control-Allow-Methods"] = method.upper()
    return response


def _same_site(request: HttpRequest, origin: str) -> bool:
    try:
        host = request.get_host()
    except Exception:  # noqa: BLE001 - a disallowed Host is not the site's own
        return False
    return origin_allowed(origin, host, request.scheme or "http")


def compat_view(
    methods: set[str], unknown_session: int = 404, cors: bool = True
) -> Callable[[View], View]:
    """Wrap an async PWD route: 405 for another method, CORS (when ``cors``), the
    Origin refusal, and errors as JSON with PWD's statuses. ``unknown_session`` is the
    status PWD answers on this route for a session it does not know."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            origin = request.headers.get("Origin")
            allowed = cors and origin is not None and embed_origin_allowed(origin)
            if request.method == "OPTIONS" and allowed:
                response = preflight(request)
            else:
                response = await _answer(
                    view, request, origin, allowed, methods, unknown_session, args, kwargs
                )
            if allowed:
                response["Access-Control-Allow-Origin"] = origin
                response["Access-Control-Allow-Credentials"] = "true"
            if cors:
                response["Vary"] = "Origin"
            # Answers name sessions (the id is the credential): never stored.
            add_never_cache_headers(response)
            return response

        return csrf_exempt(wrapper)

    return decorate


async def _answer(
    view: View,
    request: HttpRequest,
    origin: str | None,
    allowed: bool,
    methods: set[str],
    unknown_session: int,
    args: Any,
    kwargs: Any,
) -> HttpResponse:
    if request.method not in methods:
        return error(405, "method_not_allowed", f"{request.method} is not allowed here.")
    if (
        request.method not in SAFE_METHODS
        and origin
        and not allowed
        and not _same_site(request, origin)
    ):
        return error(
            403, "origin_not_allowed", "This origin may not use this server; see PWD_EMBED_ORIGINS."
        )
    try:
        return await view(request, *args, **kwargs)
    except ApiError as exc:
        status = unknown_session if exc.code == "session_not_found" else exc.status
        return error(status, exc.code, exc.message)
    except engine.EngineUnavailable as exc:
        return error(503, "out_of_capacity", f"The Docker engine does not answer: {exc}")
    except engine.EngineError as exc:
        return error(500, "engine_error", f"The Docker engine failed: {exc}")
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return error(500, "internal_error", "Something went wrong on our side.")


def upload_host_allowed(host: str | None) -> bool:
    """Whether an upload may fetch from ``host``: an exact PWD_COMPAT_UPLOAD_HOSTS name."""
    if not host:
        return False
    return host.lower().rstrip(".") in {h.strip().lower() for h in settings.PWD_COMPAT_UPLOAD_HOSTS}
