"""The embed's server side: sessions started from documentation pages (per-origin
budgets), the iframe page, and the demo lesson rendered from Markdown (docs/embed.md)."""

from functools import cache
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from markdown_it import MarkdownIt

from pwd_site.origin import embed_origin_allowed
from pwd_site.security import embeddable
from sessions_app import engine, quotas, services
from sessions_app.errors import ApiError, error_response
from sessions_app.middleware import same_origin
from sessions_app.serialize import session_data

LESSONS = Path(__file__).resolve().parent / "lessons"
PREFLIGHT_MAX_AGE = "600"


def embed_origin(origin: str | None, host: str | None) -> bool:
    """Whether a page on ``origin`` may start embedded sessions: exactly one of
    PWD_EMBED_ORIGINS, or the app's own (its lesson and iframe pages)."""
    return bool(origin) and (embed_origin_allowed(origin) or same_origin(origin, host))


def _foreign(origin: str | None) -> HttpResponse:
    return error_response(
        403, "origin_not_allowed", f"Embeds on {origin or 'no origin'} are not allowed here."
    )


def _cors(response: HttpResponse, origin: str) -> HttpResponse:
    response["Access-Control-Allow-Origin"] = origin
    response["Vary"] = "Origin"
    return response


@csrf_exempt
async def sessions(request: HttpRequest) -> HttpResponse:
    """POST: a session for an embed, counted against its origin's budget (201, the API's
    session JSON); OPTIONS: the preflight. A foreign or missing Origin: 403."""
    origin = request.headers.get("Origin")
    if origin is None or not embed_origin(origin, request.headers.get("Host")):
        return _foreign(origin)
    if request.method == "OPTIONS":
        response = HttpResponse(status=204)
        response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = "Content-Type"
        response["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        return _cors(response, origin)
    if request.method != "POST":
        response = error_response(405, "method_not_allowed", "Use POST.")
        response["Allow"] = "OPTIONS, POST"
        return _cors(response, origin)
    key = quotas.embed_key(origin, quotas.client_address(request))
    try:
        session = await services.create_session(key)
    except ApiError as exc:
        response = error_response(exc.status, exc.code, exc.message)
        if getattr(exc, "retry_after", None):
            response["Retry-After"] = str(exc.retry_after)
        return _cors(response, origin)
    except engine.EngineError:
        return _cors(
            error_response(503, "engine_unavailable", "The engine does not answer."), origin
        )
    response = JsonResponse(session_data(session, []), status=201)
    response["Cache-Control"] = "no-store"
    return _cors(response, origin)


@csrf_exempt
async def end(request: HttpRequest, session_id: str) -> HttpResponse:
    """POST: end the session (204), as the embed does when its page goes away
    (``navigator.sendBeacon``: no preflight, no body) or its ``data-pwd-duration`` is up.
    A foreign or missing Origin: 403; an unknown or ended session: 404."""
    origin = request.headers.get("Origin")
    if origin is None or not embed_origin(origin, request.headers.get("Host")):
        return _foreign(origin)
    if request.method != "POST":
        response = error_response(405, "method_not_allowed", "Use POST.")
        response["Allow"] = "POST"
        return _cors(response, origin)
    try:
        await services.end_session(await services.active_session(session_id))
    except ApiError as exc:
        return _cors(error_response(exc.status, exc.code, exc.message), origin)
    except engine.EngineError:
        # Ended all the same; the reaper removes what the engine kept.
        pass
    return _cors(HttpResponse(status=204), origin)


@embeddable
def frame(request: HttpRequest) -> HttpResponse:
    """The iframe page: one terminal (``?node=node1``, optional ``image``), framable by
    PWD_EMBED_ORIGINS only."""
    node = request.GET.get("node", "node1")
    if not node.isalnum() or len(node) > 32:
        return error_response(400, "invalid_node", "node must be letters and digits.")
    image = request.GET.get("image", "")
    if image and image not in settings.PWD_NODE_IMAGES:
        return error_response(400, "invalid_image", "That image is not offered here.")
    return render(request, "front/embed.html", {"node": node, "image": image})


@cache
def _lesson_html(name: str) -> str:
    source = (LESSONS / f"{name}.md").read_text()
    # Raw HTML on: the lesson is ours (in the repo) and places its terminal with a <div>.
    return MarkdownIt("commonmark", {"html": True}).render(source)


def lesson(request: HttpRequest) -> HttpResponse:
    """The demo lesson (front/lessons/try.md) with runnable code blocks."""
    html = _lesson_html("try")
    script = request.build_absolute_uri(f"{settings.STATIC_URL}pwd/embed.js")
    return render(request, "front/embed_lesson.html", {"lesson": html, "script": script})
