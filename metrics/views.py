"""/metrics, and the capacity page of the admin."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from metrics import access, tally
from metrics.registry import REGISTRY
from sessions_app import capacity, engine
from sessions_app.errors import error_response


def _scrape() -> bytes:
    tally.flush()  # this process's own counts first, so they are in this answer
    return generate_latest(REGISTRY)


@csrf_exempt  # it changes nothing; another method gets 405, not a CSRF page
async def metrics(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        refused = error_response(405, message="/metrics answers GET.")
        refused["Allow"] = "GET, HEAD"
        return refused
    if not access.address_allowed(request):
        return error_response(403, "forbidden", "/metrics is for PWD_METRICS_ALLOW addresses.")
    return HttpResponse(await sync_to_async(_scrape)(), content_type=CONTENT_TYPE_LATEST)


def _capacity_page(request: HttpRequest) -> HttpResponse:
    try:
        snapshot, problem = capacity.snapshot(), ""
    except engine.EngineError as exc:
        snapshot, problem = None, str(exc)
    context = {
        **admin.site.each_context(request),
        "title": "Capacity",
        "capacity": snapshot,
        "problem": problem,
    }
    return TemplateResponse(request, "admin/capacity.html", context)


capacity_page = admin.site.admin_view(_capacity_page)
