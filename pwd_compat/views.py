"""PWD's HTTP routes (docs/compat.md), each parsing PWD's shape and calling the native
services; the statuses are PWD's (docs/compat.md lists them)."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.views.decorators.csrf import csrf_exempt

from front import views as front_views
from pwd_compat import plans, uploads
from pwd_compat.cors import compat_view, error
from pwd_compat.wire import (
    empty,
    go_duration,
    instance_data,
    json_response,
    lower_keys,
    session_json,
)
from pwd_site.origin import embed_origin_allowed
from sessions_app import quotas, services, setup
from sessions_app.engine import EXEC_MAX_TIMEOUT
from sessions_app.errors import BadRequest, Conflict

SESSION_GONE = 500  # PWD answers 500 for an unknown session on these routes


@csrf_exempt
async def root(request: HttpRequest) -> HttpResponse:
    """``GET /`` is the landing page; ``POST /`` (and its preflight) is PWD's new session."""
    if request.method in {"GET", "HEAD"}:
        return await sync_to_async(front_views.landing)(request)
    return await new_session(request)


def _client_key(request: HttpRequest) -> str:
    address = quotas.client_address(request)
    origin = request.headers.get("Origin")
    if origin and embed_origin_allowed(origin):
        return quotas.embed_key(origin, address)
    return quotas.client_key(address)


@compat_view({"POST"})
async def new_session(request: HttpRequest) -> HttpResponse:
    form = request.POST if request.POST else request.GET
    raw = form.get("session-duration", "")
    if raw:
        duration = go_duration(raw)
        if duration is None:
            raise BadRequest(f"session-duration {raw[:40]!r} is not a Go duration.", "bad_duration")
        if duration.total_seconds() > settings.PWD_SESSION_LIFETIME or not duration:
            raise BadRequest(
                f"session-duration may be at most {settings.PWD_SESSION_LIFETIME} seconds.",
                "bad_duration",
            )
    if form.get("stack"):
        raise BadRequest(
            "Stacks are not supported here; use POST /sessions/<id>/setup.", "bad_stack"
        )
    if form.get("image_name"):
        services.allowed_image(form.get("image_name"))
    session = await services.create_session(_client_key(request))
    if request.headers.get("X-Requested-With") == "XMLHttpRequest":
        return json_response({"session_id": session.id, "hostname": request.get_host()})
    return HttpResponseRedirect(session.page_path)


@compat_view({"GET", "HEAD", "DELETE"})
async def session(request: HttpRequest, session_id: str) -> HttpResponse:
    found = await services.active_session(session_id)
    if request.method == "DELETE":
        await services.end_session(found)
        return empty()
    nodes = await services.session_nodes(found)
    return json_response(session_json(found, nodes, request.get_host()))


@compat_view({"POST"})
async def close(request: HttpRequest, session_id: str) -> HttpResponse:
    await services.end_session(await services.active_session(session_id))
    return empty()


def _string_list(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadRequest(f"{field} must be an array of strings.", "invalid_request")
    return value


@compat_view({"POST"}, unknown_session=SESSION_GONE)
async def instances(request: HttpRequest, session_id: str) -> HttpResponse:
    body = lower_keys(request.body)
    if body is None:
        raise BadRequest("The body must be a JSON object.", "invalid_json")
    for field in ("hostname", "imagename", "type"):
        if body.get(field) is not None and not isinstance(body[field], str):
            raise BadRequest(f"{field} must be a string.", "invalid_request")
    _string_list(body.get("envs"), "Envs")
    _string_list(body.get("networks"), "Networks")
    kind = body.get("type") or "linux"
    if kind == "windows":
        return error(401, "windows_not_allowed", "This server has no Windows nodes.")
    if kind != "linux":
        raise BadRequest("type must be linux or windows.", "invalid_request")
    image = services.allowed_image(body.get("imagename") or None)
    found = await services.active_session(session_id)
    node = await services.add_node(found, image)
    return json_response(instance_data(found, node, request.get_host()))


@compat_view({"DELETE"}, unknown_session=SESSION_GONE)
async def instance(request: HttpRequest, session_id: str, name: str) -> HttpResponse:
    await services.remove_node(await services.active_session(session_id), name)
    return empty()


@compat_view({"POST"})
async def exec_command(request: HttpRequest, session_id: str, name: str) -> HttpResponse:
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        body = None
    command = body.get("command") if isinstance(body, dict) else None
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise BadRequest('The body must be {"command": [argv strings]}.', "invalid_request")
    found = await services.active_session(session_id)
    result = await services.exec_in_node(found, name, command, EXEC_MAX_TIMEOUT)
    return json_response({"status_code": result.exit_code})


@compat_view({"POST"})
async def upload(request: HttpRequest, session_id: str, name: str) -> HttpResponse:
    url, path = request.GET.get("url", ""), request.GET.get("path", "")
    found = await services.active_session(session_id)
    if url:
        await uploads.from_url(found, name, url, path)
    else:
        await uploads.from_form(found, name, path, request)
    return empty()


@compat_view({"POST"}, unknown_session=SESSION_GONE)
async def setup_session(request: HttpRequest, session_id: str) -> HttpResponse:
    plan = plans.parse(lower_keys(request.body))
    found = await services.active_session(session_id)
    try:
        await setup.set_up(found, plan)
    except Conflict as exc:
        if exc.code != "session_not_empty":
            raise
        return HttpResponse(
            "Cannot setup a session that contains instances\n",
            status=409,
            content_type="text/plain",
        )
    return empty()


@compat_view({"GET", "HEAD"}, cors=False)
async def ping(request: HttpRequest) -> HttpResponse:
    return empty()


@compat_view({"GET", "HEAD"}, cors=False)
async def oauth_providers(request: HttpRequest) -> HttpResponse:
    return json_response([])


@compat_view({"GET", "HEAD"})
async def users_me(request: HttpRequest) -> HttpResponse:
    return error(401, "not_signed_in", "This server has no user accounts.")
