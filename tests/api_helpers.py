"""Helpers shared by the API tests: calls through Django's AsyncClient, and clean-up."""

import json
import warnings
from typing import Any

from django.test import AsyncClient


class ClientAt(AsyncClient):
    """An AsyncClient connecting from ``address`` (ASGI takes it from scope["client"])."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address

    def _base_scope(self, **request: Any) -> dict[str, Any]:
        return {**super()._base_scope(**request), "client": [self.address, 40000]}


async def post(client: AsyncClient, path: str, body: Any = None, **headers: str):
    data = "" if body is None else json.dumps(body)
    return await client.post(path, data, content_type="application/json", headers=headers)


async def create_session(client: AsyncClient) -> dict[str, Any]:
    response = await post(client, "/api/sessions/")
    assert response.status_code == 201, response.content
    return response.json()


async def add_node(client: AsyncClient, session_id: str, body: Any = None):
    return await post(client, f"/api/sessions/{session_id}/nodes/", body)


async def run(client: AsyncClient, session_id: str, node: str, script: str, seconds: float = 30):
    """``sh -c script`` in a node through the exec API; returns the JSON result."""
    response = await post(
        client,
        f"/api/sessions/{session_id}/nodes/{node}/exec/",
        {"command": ["sh", "-c", script], "timeout": seconds},
    )
    assert response.status_code == 200, response.content
    return response.json()


def error_of(response) -> dict[str, str]:
    """The error object of a JSON error response (and checks the shape)."""
    assert response["Content-Type"].startswith("application/json"), response.content
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"]
    assert body["error"]["message"]
    return body["error"]


class Sessions:
    """Creates sessions through the API and removes whatever is left at teardown."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.ids: list[str] = []

    async def create(self) -> dict[str, Any]:
        data = await create_session(self.client)
        self.ids.append(data["id"])
        return data

    async def close(self) -> None:
        from sessions_app import engine

        for session_id in self.ids:
            await self.client.delete(f"/api/sessions/{session_id}/")
            await engine.run(remove_session_objects, session_id)


def remove_session_objects(session_id: str) -> None:
    """A test's clean-up of a session: its containers and volumes must go; a network
    the swarm still holds a task on after the engine's wait (seen under load) is left to
    the run's final clean-up, with a warning, instead of failing the test that used it."""
    from sessions_app import engine

    try:
        engine.remove_session_objects(session_id)
    except engine.EngineError as exc:
        if "in use by task" not in str(exc):
            raise
        warnings.warn(f"session {session_id[:6]}: {exc}", stacklevel=2)
