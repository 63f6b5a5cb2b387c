"""Sessions through the API: create (with its overlay network), read, end."""

from datetime import timedelta

import pytest
from django.test import AsyncClient
from django.utils import timezone

from sessions_app.models import Session
from tests.api_helpers import error_of, post

pytestmark = pytest.mark.django_db(transaction=True)


async def test_it_creates_a_session_with_its_own_overlay_network(engine, sessions):
    data = await sessions.create()

    assert set(data) == {
        "id",
        "url",
        "created_at",
        "expires_at",
        "hard_expires_at",
        "max_nodes",
        "nodes",
    }
    assert len(data["id"]) >= 22  # 128 bits or more, base64
    assert data["url"] == f"/p/{data['id']}/"
    assert data["max_nodes"] == 5
    assert data["nodes"] == []
    session = await Session.objects.aget(pk=data["id"])
    network = engine.client().api.inspect_network(session.network_id)
    assert network["Driver"] == "overlay"
    assert network["Attachable"] is True
    assert network["Labels"]["pwd.session"] == data["id"]
    assert network["Labels"]["pwd.role"] == "network"


async def test_session_ids_are_unguessable_and_url_safe(engine, sessions):
    ids = {(await sessions.create())["id"] for _ in range(3)}
    assert len(ids) == 3
    assert all(len(i) >= 22 and i.replace("-", "").replace("_", "").isalnum() for i in ids)


async def test_it_returns_the_session_and_counts_the_call_as_activity(engine, sessions):
    data = await sessions.create()
    earlier = timezone.now() - timedelta(minutes=5)
    await Session.objects.filter(pk=data["id"]).aupdate(last_activity_at=earlier)

    response = await sessions.client.get(f"/api/sessions/{data['id']}/")

    assert response.status_code == 200
    assert response.json()["id"] == data["id"]
    session = await Session.objects.aget(pk=data["id"])
    assert session.last_activity_at > earlier + timedelta(minutes=4)


async def test_deleting_a_session_removes_its_network_and_then_404s(engine, sessions):
    data = await sessions.create()
    session = await Session.objects.aget(pk=data["id"])

    response = await sessions.client.delete(f"/api/sessions/{data['id']}/")

    assert response.status_code == 204
    assert not engine.list_objects().networks
    ended = await Session.objects.aget(pk=data["id"])
    assert ended.ended_at is not None
    assert ended.cleaned_at is not None
    assert session.network_name
    gone = await sessions.client.get(f"/api/sessions/{data['id']}/")
    assert gone.status_code == 404
    assert error_of(gone)["code"] == "session_not_found"
    again = await sessions.client.delete(f"/api/sessions/{data['id']}/")
    assert again.status_code == 404


async def test_an_expired_session_is_not_found(engine, sessions):
    data = await sessions.create()
    long_ago = timezone.now() - timedelta(days=1)
    await Session.objects.filter(pk=data["id"]).aupdate(
        created_at=long_ago, last_activity_at=long_ago
    )

    response = await sessions.client.get(f"/api/sessions/{data['id']}/")

    assert response.status_code == 404
    assert error_of(response)["code"] == "session_not_found"


async def test_an_unknown_session_is_not_found_for_every_method(engine):
    client = AsyncClient()
    for response in [
        await client.get("/api/sessions/nope/"),
        await client.delete("/api/sessions/nope/"),
        await post(client, "/api/sessions/nope/nodes/"),
        await client.get("/api/sessions/nope/nodes/node1/"),
        await post(client, "/api/sessions/nope/nodes/node1/exec/", {"command": ["true"]}),
    ]:
        assert response.status_code == 404
        assert error_of(response)["code"] == "session_not_found"


@pytest.mark.parametrize("session_id", ["abcdefghijklmno_xyz", "abcdefghijklmno-xyz", "-_-_"])
def test_any_session_id_makes_a_valid_network_name(engine, session_id):
    name, network_id = engine.create_session_network(session_id)
    try:
        assert engine.client().api.inspect_network(network_id)["Name"] == name
    finally:
        engine.remove_network(network_id)
