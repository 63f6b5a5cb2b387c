"""The JSON API's operations (documented in docs/api.md and at /api/schema/).

Each validates, calls one function of :mod:`sessions_app.services`, and renders.
Every call on a session counts as activity on it.
"""

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest
from ninja import Router, Status

from sessions_app import portwatch, quotas, schemas, services
from sessions_app.serialize import node_data, session_data

router = Router()

Error = schemas.Error
# The errors every operation on a session may answer; each operation adds its own.
ON_SESSION = {404: Error}
CHANGES = {403: Error, 502: Error, 503: Error}  # a foreign origin; the engine
# A removal never fails for the engine (sessions_app.removals finishes it).
REMOVES = {403: Error}
TAKES_BODY = {400: Error, 413: Error}
# What an optional body left out stands for.
NO_FIELDS = schemas.NewSession()
DEFAULT_NODE = schemas.NewNode()


def get(path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``router.get`` that answers HEAD too (left out of the document, as usual)."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        router.add_api_operation(
            path, ["HEAD"], view, response=kwargs["response"], include_in_schema=False
        )
        return router.get(path, **kwargs)(view)

    return decorate


@router.post(
    "/sessions/",
    response={201: schemas.Session, 429: Error, **TAKES_BODY, **CHANGES},
    operation_id="createSession",
    summary="Create a session and its overlay network",
)
async def sessions(request: HttpRequest, payload: schemas.NewSession = NO_FIELDS) -> Status:
    key = quotas.client_key(quotas.client_address(request))
    session = await services.create_session(key)
    return Status(201, session_data(session, []))


@get(
    "/sessions/{session_id}/",
    response={200: schemas.Session, **ON_SESSION},
    operation_id="getSession",
    summary="A session and its nodes",
)
async def session(request: HttpRequest, session_id: str) -> dict[str, Any]:
    found = await services.active_session(session_id)
    return session_data(found, await portwatch.with_ports(await services.session_nodes(found)))


@router.delete(
    "/sessions/{session_id}/",
    response={204: None, **ON_SESSION, **REMOVES},
    operation_id="deleteSession",
    summary="End a session at once; its nodes, volumes and network are removed",
    description="The session has ended when this answers (404 from then on, viewers hear "
    "session.ended). Its objects are removed by then, or, when the engine is slower than "
    "PWD_REMOVAL_WAIT to let go, their removal goes on in the background: guaranteed, "
    "never an error.",
)
async def end_session(request: HttpRequest, session_id: str) -> Status:
    await services.end_session(await services.active_session(session_id))
    return Status(204, None)


@router.post(
    "/sessions/{session_id}/nodes/",
    response={201: schemas.Node, 409: Error, 429: Error, **ON_SESSION, **TAKES_BODY, **CHANGES},
    operation_id="addNode",
    summary="Add a node; answers once the node's own Docker engine answers",
    description="400 bad_image for an image that is not one of PWD_NODE_IMAGES.",
)
async def add_node(
    request: HttpRequest, session_id: str, payload: schemas.NewNode = DEFAULT_NODE
) -> Status:
    image = services.allowed_image(payload.image)
    session = await services.active_session(session_id)
    return Status(201, node_data(await services.add_node(session, image)))


@get(
    "/sessions/{session_id}/nodes/{name}/",
    response={200: schemas.Node, **ON_SESSION},
    operation_id="getNode",
    summary="One node",
)
async def node(request: HttpRequest, session_id: str, name: str) -> dict[str, Any]:
    session = await services.active_session(session_id)
    return node_data(await portwatch.with_port(await services.get_node(session, name)))


@router.delete(
    "/sessions/{session_id}/nodes/{name}/",
    response={204: None, 409: Error, **ON_SESSION, **REMOVES},
    operation_id="deleteNode",
    summary="Remove a node at once; its container and volume are removed",
    description="The node is gone from the session when this answers (viewers hear "
    "node.removed); its container goes by then or in the background, as for a session. "
    "409 node_starting while it starts.",
)
async def remove_node(request: HttpRequest, session_id: str, name: str) -> Status:
    session = await services.active_session(session_id)
    await services.remove_node(session, name)
    return Status(204, None)


@router.post(
    "/sessions/{session_id}/nodes/{name}/exec/",
    response={
        200: schemas.ExecResult,
        409: Error,
        410: Error,
        429: Error,
        **ON_SESSION,
        **TAKES_BODY,
        **CHANGES,
    },
    operation_id="execInNode",
    summary="Run a command in a node and return its output",
)
async def node_exec(
    request: HttpRequest, session_id: str, name: str, payload: schemas.ExecRequest
) -> dict[str, Any]:
    session = await services.active_session(session_id)
    result = await services.exec_in_node(session, name, payload.command, payload.timeout)
    return {
        "exit_code": result.exit_code,
        "output": result.output,
        "truncated": result.truncated,
        "timed_out": result.timed_out,
    }
