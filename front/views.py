"""The pages: the landing page, its script-free start form and the session page."""

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_POST

from front import wording
from sessions_app import engine, hot, quotas, services
from sessions_app.errors import TooManyRequests, error_response
from sessions_app.models import Node, Session
from sessions_app.serialize import session_data
from terminals import warm


def landing(request: HttpRequest) -> HttpResponse:
    context = {"max_nodes": settings.PWD_MAX_NODES, "limits": wording.limits()}
    return render(request, "front/landing.html", context)


@require_POST
async def start(request: HttpRequest) -> HttpResponse:
    """The landing page's Start: a hot session when one is held (node1 at a prompt),
    else a new empty one (sessions_app.hot.start).

    The form without JavaScript is redirected to the session's page, or gets a page
    saying why not: at capacity or past the address's rate, 429 with Retry-After and the
    "at capacity" page; an engine in trouble, 503 with the same page. The page's script
    (``Accept: application/json``) gets the session's JSON (201) or the API's JSON error.
    """
    key = quotas.client_key(quotas.client_address(request))
    script = request.get_preferred_type(["text/html", "application/json"]) == "application/json"
    try:
        session = await hot.start(key)
    except TooManyRequests as exc:
        if script:
            return exc.response()
        return _busy(request, exc.message, exc.retry_after or quotas.CAPACITY_RETRY_AFTER, 429)
    except engine.EngineError:
        if script:
            return error_response(503, "engine_unavailable", "The engine does not answer.")
        return _busy(request, "The Docker engine does not answer right now.", 30, 503)
    nodes = await services.session_nodes(session)
    for node in nodes:  # a hot session's node1: its page opens on its terminal
        warm.soon(node.container_id)
    if script:
        return JsonResponse(session_data(session, nodes), status=201)
    return redirect(session.page_path, permanent=False)


def _busy(request: HttpRequest, message: str, retry_after: int, status: int) -> HttpResponse:
    context = {"message": message, "retry_after": retry_after, "wait": wording.wait(retry_after)}
    response = render(request, "front/at_capacity.html", context, status=status)
    response["Retry-After"] = str(retry_after)
    return response


@ensure_csrf_cookie
def session_page(request: HttpRequest, session_id: str) -> HttpResponse:
    """The page of an active session; 404 for one unknown or ended."""
    session = Session.objects.filter(pk=session_id).first()
    if session is None or not session.is_active():
        raise Http404("no such session, or it has ended")
    nodes = [
        {"name": n.name, "hostname": n.hostname, "ip": n.ip, "status": n.status}
        for n in session.nodes.exclude(status=Node.Status.GONE)
    ]
    initial = {
        "id": session.id,
        "expires_at": session.expires_at.isoformat(),
        # The page counts down itself; typing pushes the idle limit back.
        # The hard end: the lifetime's, or a workshop seat's fixed end.
        "lifetime_ends_at": session.hard_expires_at.isoformat(),
        "idle_timeout": settings.PWD_IDLE_TIMEOUT,
        "warning_seconds": settings.PWD_EXPIRY_WARNING,
        "max_nodes": session.max_nodes,
        "nodes": nodes,
    }
    context = {"session": session, "limits": wording.limits(), "initial": initial}
    return render(request, "front/session.html", context)


async def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and `make run`: the process answers HTTP (async: no
    worker thread, so it answers while the thread pool is busy)."""
    return JsonResponse({"ok": True})
