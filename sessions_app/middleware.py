"""Origin policy and JSON errors for everything under /api/.

Non-browser clients send no Origin and need no CSRF token. A browser page may call the
API from its own origin, or from an origin listed exactly in CORS_ALLOWED_ORIGINS
(PWD_CORS_ORIGINS): those get preflight answers and Access-Control-Allow-Origin. Any
other origin is refused with 403 on a state-changing method, so a page elsewhere cannot
create or remove nodes on a visitor's behalf; a read from it gets no CORS header, so the
browser withholds the answer.

Django's own error pages (an unknown URL's 404, a crash's 500) become JSON errors here,
so API clients always get ``{"error": {...}}``.
"""

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from sessions_app.errors import error_response

API_PREFIX = "/api/"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
PREFLIGHT_MAX_AGE = "600"


def _normalise(origin: str) -> str:
    return origin.strip().lower().rstrip("/")


def listed_origin(origin: str) -> bool:
    """Whether ``origin`` is one of the exact CORS_ALLOWED_ORIGINS."""
    return _normalise(origin) in {_normalise(o) for o in settings.CORS_ALLOWED_ORIGINS}


def same_origin(origin: str, host: str | None) -> bool:
    parts = urlsplit(_normalise(origin))
    return (
        parts.scheme in {"http", "https"}
        and bool(parts.netloc)
        and host is not None
        and parts.netloc == host.strip().lower()
    )


class ApiMiddleware:
    async_capable = True
    sync_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponse]]) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIX):
            return await self.get_response(request)
        origin = request.headers.get("Origin")
        listed = origin is not None and listed_origin(origin)
        trusted = origin is None or listed or same_origin(origin, request.headers.get("Host"))
        if (
            origin is not None
            and request.method == "OPTIONS"
            and "Access-Control-Request-Method" in request.headers
        ):
            return self._preflight(request, origin, trusted)
        if not trusted and request.method not in SAFE_METHODS:
            return error_response(
                403, "origin_not_allowed", f"Requests from {origin} are not allowed here."
            )
        response = _as_json_error(request, await self.get_response(request))
        if listed:
            response["Access-Control-Allow-Origin"] = origin
        response["Vary"] = ", ".join(filter(None, [response.get("Vary"), "Origin"]))
        return response

    @staticmethod
    def _preflight(request: HttpRequest, origin: str, trusted: bool) -> HttpResponse:
        if not trusted:
            return error_response(
                403, "origin_not_allowed", f"Requests from {origin} are not allowed here."
            )
        response = HttpResponse(status=204)
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
        response["Access-Control-Allow-Headers"] = request.headers.get(
            "Access-Control-Request-Headers", "Content-Type"
        )
        response["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        response["Vary"] = "Origin"
        return response


def _as_json_error(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Django's HTML error responses (404 for an unknown URL, 500, ninja's 405...) as
    JSON errors."""
    if response.status_code < 400 or response.get("Content-Type", "").startswith(
        "application/json"
    ):
        return response
    if response.status_code == 405 and "Allow" in response:
        allowed = sorted(m.strip() for m in response["Allow"].split(","))
        response["Allow"] = ", ".join(allowed)
        uses = " or ".join(m for m in allowed if m != "HEAD")
        replacement = error_response(
            405, "method_not_allowed", f"{request.method} is not allowed here; use {uses}."
        )
    else:
        replacement = error_response(response.status_code)
    for header in ("Allow", "Retry-After"):
        if header in response:
            replacement[header] = response[header]
    return replacement
