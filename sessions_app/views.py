"""The JSON API (documented in docs/api.md and the OpenAPI document at /api/schema/).

Each view validates, calls one function of :mod:`sessions_app.services`, and renders.
Every call on a session counts as activity on it.
"""

import functools
from pathlib import Path
from typing import Any

import yaml
from django.http import HttpRequest, HttpResponse, JsonResponse

from sessions_app import quotas, services
from sessions_app.api import api_view, json_body
from sessions_app.errors import BadRequest
from sessions_app.provisioning import EXEC_MAX_TIMEOUT
from sessions_app.serialize import node_data, session_data

DEFAULT_EXEC_TIMEOUT = 30


@api_view("POST")
async def sessions(request: HttpRequest) -> HttpResponse:
    json_body(request)  # no fields yet, but a malformed body is still an error
    key = quotas.client_key(quotas.client_address(request))
    session = await services.create_session(key)
    return JsonResponse(session_data(session, []), status=201)


@api_view("GET", "DELETE")
async def session_detail(request: HttpRequest, session_id: str) -> HttpResponse:
    session = await services.active_session(session_id)
    if request.method == "DELETE":
        await services.end_session(session)
        return HttpResponse(status=204)
    return JsonResponse(session_data(session, await services.session_nodes(session)))


@api_view("POST")
async def nodes(request: HttpRequest, session_id: str) -> HttpResponse:
    body = json_body(request)
    image = services.allowed_image(body.get("image"))
    session = await services.active_session(session_id)
    node = await services.add_node(session, image)
    return JsonResponse(node_data(node), status=201)


@api_view("GET", "DELETE")
async def node_detail(request: HttpRequest, session_id: str, name: str) -> HttpResponse:
    session = await services.active_session(session_id)
    if request.method == "DELETE":
        await services.remove_node(session, name)
        return HttpResponse(status=204)
    return JsonResponse(node_data(await services.get_node(session, name)))


@api_view("POST")
async def node_exec(request: HttpRequest, session_id: str, name: str) -> HttpResponse:
    command, timeout = _exec_request(json_body(request))
    session = await services.active_session(session_id)
    result = await services.exec_in_node(session, name, command, timeout)
    return JsonResponse(
        {
            "exit_code": result.exit_code,
            "output": result.output,
            "truncated": result.truncated,
            "timed_out": result.timed_out,
        }
    )


def _exec_request(body: dict[str, Any]) -> tuple[list[str], float]:
    command = body.get("command")
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(arg, str) for arg in command)
    ):
        raise BadRequest("command must be a non-empty list of strings.")
    timeout = body.get("timeout", DEFAULT_EXEC_TIMEOUT)
    # bool is an int in Python; `true` is not a number of seconds.
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise BadRequest("timeout must be a number of seconds.")
    if not 0 < timeout <= EXEC_MAX_TIMEOUT:
        raise BadRequest(f"timeout must be more than 0 and at most {EXEC_MAX_TIMEOUT} seconds.")
    return command, float(timeout)


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The hand-written OpenAPI 3.1 document (sessions_app/openapi.yaml)."""
    return yaml.safe_load((Path(__file__).parent / "openapi.yaml").read_text())


@api_view("GET")
async def schema(request: HttpRequest) -> HttpResponse:
    return JsonResponse(openapi_document())
