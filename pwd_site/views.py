from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from sessions_app import provisioning, quotas, services
from sessions_app.errors import TooManyRequests


def _duration(seconds: float) -> str:
    """A short human duration: ``4 hours``, ``30 minutes``, ``90 seconds``."""
    for unit, size in (("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{int(seconds)} seconds"


def _size(size: int) -> str:
    """A short human size in powers of 1024: ``1 GiB``, ``512 MiB``."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:g} {unit}"
    return f"{size} bytes"


def limits() -> dict[str, Any]:
    """What one node and one session may use, worded for the pages."""
    return {
        "memory": _size(settings.PWD_NODE_MEMORY),
        "swap": _size(settings.PWD_NODE_SWAP) if settings.PWD_NODE_SWAP else "",
        "cpus": f"{settings.PWD_NODE_CPUS:g}",
        "pids": settings.PWD_NODE_PIDS,
        "disk": _size(settings.PWD_NODE_DISK) if settings.PWD_NODE_DISK else "",
        "lifetime": _duration(settings.PWD_SESSION_LIFETIME),
        "idle": _duration(settings.PWD_IDLE_TIMEOUT),
    }


def landing(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "landing.html",
        {"max_nodes": settings.PWD_MAX_NODES, "limits": limits()},
    )


@require_POST
async def start(request: HttpRequest) -> HttpResponse:
    """The landing page's form without JavaScript: a new session, or a page saying why not.

    At capacity or past the address's rate: 429 with Retry-After and the "at capacity"
    page; an engine in trouble: 503 with the same page.
    """
    key = quotas.client_key(quotas.client_address(request))
    try:
        session = await services.create_session(key)
    except TooManyRequests as exc:
        return _busy(request, exc.message, exc.retry_after or quotas.CAPACITY_RETRY_AFTER, 429)
    except provisioning.EngineError:
        return _busy(request, "The Docker engine does not answer right now.", 30, 503)
    return redirect(session.page_path, permanent=False)


def _busy(request: HttpRequest, message: str, retry_after: int, status: int) -> HttpResponse:
    response = render(
        request,
        "at_capacity.html",
        {"message": message, "retry_after": retry_after, "wait": _wait(retry_after)},
        status=status,
    )
    response["Retry-After"] = str(retry_after)
    return response


def _wait(seconds: int) -> str:
    if seconds <= 90:
        return "a minute"
    minutes = round(seconds / 60)
    return f"{minutes} minutes"


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})
