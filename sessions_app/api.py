"""Plumbing for the JSON API views: the ``api_view`` decorator and body parsing.

Views are plain ``async def`` functions (no Django REST framework): under ASGI a sync
view runs on a thread shared with other requests, so a slow node start or a 30 s exec
would hold up everyone; async views wait on the engine thread pool instead.
"""

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from sessions_app import provisioning
from sessions_app.errors import ApiError, BadRequest, PayloadTooLarge, error_response

log = logging.getLogger(__name__)

# The API takes small JSON documents only; the largest is an exec command line.
MAX_BODY_BYTES = 64 * 1024

AsyncView = Callable[..., Awaitable[HttpResponse]]


def api_view(*methods: str) -> Callable[[AsyncView], AsyncView]:
    """Make an async view a JSON API endpoint answering ``methods``.

    CSRF-exempt (clients send JSON, not cookies; the Origin check in
    :mod:`sessions_app.middleware` keeps foreign pages out), 405 for other methods, and
    every failure as a JSON error: ApiError with its status, an engine that does not
    answer 503, any other engine failure 502, anything unexpected 500.
    """
    allowed = set(methods) | ({"HEAD"} if "GET" in methods else set())

    def decorate(view: AsyncView) -> AsyncView:
        @csrf_exempt
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in allowed:
                response = error_response(
                    405,
                    "method_not_allowed",
                    f"{request.method} is not allowed here; use {' or '.join(methods)}.",
                )
                response["Allow"] = ", ".join(sorted(allowed))
                return response
            try:
                return await view(request, *args, **kwargs)
            except ApiError as exc:
                return exc.response()
            except provisioning.EngineUnavailable as exc:
                response = error_response(503, "engine_unavailable", _sentence(exc))
                response["Retry-After"] = "5"
                return response
            except provisioning.NodeStartError as exc:
                return error_response(502, "node_start_failed", _sentence(exc))
            except provisioning.EngineError as exc:
                return error_response(502, "engine_error", _sentence(exc))
            except Exception:
                log.exception("unexpected error in %s %s", request.method, view.__name__)
                return error_response(500, "internal_error", "Something went wrong on our side.")

        wrapper.api_methods = tuple(methods)  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _sentence(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def json_body(request: HttpRequest) -> dict[str, Any]:
    """The request's JSON object; ``{}`` for an empty body. Raises 400 or 413 ApiErrors."""
    declared = request.headers.get("Content-Length") or "0"
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The body is larger than {MAX_BODY_BYTES} bytes.")
    try:
        body = request.body
    except RequestDataTooBig:
        raise PayloadTooLarge(f"The body is larger than {MAX_BODY_BYTES} bytes.") from None
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The body is larger than {MAX_BODY_BYTES} bytes.")
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The body is not valid JSON.", "invalid_json") from None
    except RecursionError:
        raise BadRequest("The body is JSON nested too deeply.", "invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object.", "invalid_request")
    return data
