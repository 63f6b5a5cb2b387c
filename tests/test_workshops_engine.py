"""Workshops against the real engine: seats made before anyone joins (sessions, networks,
nodes, the fixed end), join and rejoin, a full workshop, a failed seat retried and shown,
and an ended workshop leaving nothing on the engine."""

import json

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from sessions_app.models import Node, Session
from tests.workshop_helpers import auth, join, make_user, token_for
from workshops.models import Seat, Workshop
from workshops.provision import Provisioner

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


async def create(token: str, body: dict) -> dict:
    response = await AsyncClient().post(
        "/api/workshops/", json.dumps(body), content_type="application/json", headers=auth(token)
    )
    assert response.status_code == 201, response.content
    return response.json()


async def roster(token: str, workshop_id: str) -> dict:
    response = await AsyncClient().get(f"/api/workshops/{workshop_id}/", headers=auth(token))
    assert response.status_code == 200, response.content
    return response.json()


async def provision_until_settled(provisioner: Provisioner, workshop_id: str, passes: int = 12):
    """Passes until no seat is waiting or provisioning (bounded)."""
    for _ in range(passes):
        await provisioner.run_once()
        busy = Seat.objects.filter(
            workshop_id=workshop_id, status__in=[Seat.Status.WAITING, Seat.Status.PROVISIONING]
        )
        if not await busy.aexists():
            return
    raise AssertionError("seats still being made after the passes")


def session_objects(engine, session_id: str) -> list[dict]:
    return [
        c
        for c in engine.list_objects().containers
        if c["Labels"].get(engine.LABEL_SESSION) == session_id
    ]


async def test_a_workshop_of_3_seats_by_2_nodes_is_ready_before_the_first_join_then_ends_clean(
    engine, settings
):
    settings.PWD_POOL_SIZE = 0
    user = await sync_to_async(make_user)("teacher")
    token = await sync_to_async(token_for)(user)
    created = await create(token, {"title": "Swarm 101", "seats": 3, "nodes_per_seat": 2})
    assert created["capacity"]["seats_that_fit"] == 3, created["capacity"]

    # One seat at a time here: the suite's in-memory SQLite answers "table is locked" to
    # writes from two threads at once, where a file database waits (the live-server
    # tests run the provisioner at its default parallelism).
    await provision_until_settled(Provisioner(parallelism=1), created["id"])

    data = await roster(token, created["id"])
    assert [s["status"] for s in data["seats"]] == ["ready"] * 3, data["seats"]
    workshop = await Workshop.objects.aget(pk=created["id"])
    seat_sessions = Session.objects.filter(seat__workshop=workshop).order_by("seat__number")
    sessions = [s async for s in seat_sessions]
    assert len(sessions) == 3
    for seat, session in zip(data["seats"], sessions, strict=True):
        assert [n["name"] for n in seat["nodes"]] == ["node1", "node2"]
        assert {n["status"] for n in seat["nodes"]} == {"running"}
        assert session.ends_at == workshop.ends_at
        assert len(await sync_to_async(session_objects)(engine, session.id)) == 2

    # Join, rejoin from the same browser, a second trainee, the third, then full.
    ada, grace = AsyncClient(), AsyncClient()
    first = await join(ada, created["join_code"], "Ada")
    assert first.status_code == 201, first.content
    assert [n["name"] for n in first.json()["nodes"]] == ["node1", "node2"]
    assert (await join(ada, created["join_code"], "Ada")).json()["id"] == first.json()["id"]
    assert (await join(grace, created["join_code"], "Grace")).status_code == 201
    assert (await join(AsyncClient(), created["join_code"], "Linus")).status_code == 201
    full = await join(AsyncClient(), created["join_code"], "Late")
    assert full.status_code == 409
    assert full.json()["error"]["code"] == "workshop_full"
    taken = await roster(token, created["id"])
    assert sorted(s["trainee_name"] for s in taken["seats"]) == ["Ada", "Grace", "Linus"]

    # The trainee's own session URL works as today.
    own = await AsyncClient().get(f"/api/sessions/{first.json()['id']}/")
    assert own.status_code == 200

    ended = await AsyncClient().delete(f"/api/workshops/{created['id']}/", headers=auth(token))
    assert ended.status_code == 204
    for session in sessions:
        await session.arefresh_from_db()
        assert session.ended_at is not None
        assert await sync_to_async(session_objects)(engine, session.id) == []
    networks = [
        n
        for n in engine.list_objects().networks
        if n["Labels"].get(engine.LABEL_SESSION) in {s.id for s in sessions}
    ]
    assert networks == []
    after = await join(AsyncClient(), created["join_code"], "Later")
    assert after.status_code == 410


async def test_a_failed_seat_is_shown_with_why_and_made_again(engine, settings):
    settings.PWD_POOL_SIZE = 0
    settings.PWD_WORKSHOP_RETRY_DELAY = 0
    user = await sync_to_async(make_user)("teacher")
    token = await sync_to_async(token_for)(user)
    created = await create(token, {"title": "Flaky", "seats": 1})
    # An image the engine does not have: the seat's node cannot start.
    missing = "pwd-no-such-image:never"
    settings.PWD_NODE_IMAGES = [*settings.PWD_NODE_IMAGES, missing]
    await Workshop.objects.filter(pk=created["id"]).aupdate(image=missing)

    provisioner = Provisioner(parallelism=1)
    await provisioner.run_once()

    seat = (await roster(token, created["id"]))["seats"][0]
    assert seat["status"] == "failed"
    assert seat["attempts"] == 1
    assert seat["error"]
    row = await Seat.objects.select_related("workshop").aget(workshop_id=created["id"])
    # What the failed attempt made is gone: no node rows or containers of an active session.
    assert not await Node.objects.filter(session__in=Session.objects.active()).aexists()

    await Workshop.objects.filter(pk=created["id"]).aupdate(image=settings.PWD_NODE_IMAGE)
    await provision_until_settled(provisioner, created["id"])
    seat = (await roster(token, created["id"]))["seats"][0]
    assert seat["status"] == "ready", seat
    assert [n["status"] for n in seat["nodes"]] == ["running"]
    assert row.number == 1
    await AsyncClient().delete(f"/api/workshops/{created['id']}/", headers=auth(token))
