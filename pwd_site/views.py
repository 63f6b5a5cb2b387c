from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


def _duration(seconds: float) -> str:
    """A short human duration: ``4 hours``, ``30 minutes``, ``90 seconds``."""
    for unit, size in (("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{int(seconds)} seconds"


def landing(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "landing.html",
        {
            "max_nodes": settings.PWD_MAX_NODES,
            "lifetime": _duration(settings.PWD_SESSION_LIFETIME),
            "idle": _duration(settings.PWD_IDLE_TIMEOUT),
        },
    )


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})
