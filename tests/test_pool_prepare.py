"""Attach ahead (PWD_POOL_PREPARE) against the real engine: a session gets a pool node
prepared as its next node in the background, the add of that name hands it out as it
is, and nothing prepared outlives its session or is taken from a live one."""

import asyncio
import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.utils import timezone

from sessions_app import pool, services
from sessions_app.keeper import Keeper
from sessions_app.models import Node, PoolNode, Session
from sessions_app.reaper import Reaper
from terminals import hub as hubs
from tests.conftest import close_keeper
from tests.terminal_helpers import Terminal

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def sh(engine, container_id: str, script: str) -> str:
    result = engine.exec_in_node(container_id, ["sh", "-c", script], timeout=30, max_output=65536)
    assert result.exit_code == 0, result.output
    return result.output.strip()


def networks_of(engine, container_id: str) -> set[str]:
    attrs = engine.client().api.inspect_container(container_id)
    return set(attrs["NetworkSettings"]["Networks"])


async def settled() -> None:
    """Every preparation of this process has finished (they run in the background)."""
    while tasks := pool.pending():
        await asyncio.gather(*tasks, return_exceptions=True)


def prepared_row(session: Session) -> PoolNode | None:
    return PoolNode.objects.prepared_for(session).first()


@pytest.fixture
def keeper(engine, settings):
    settings.PWD_POOL_SIZE = 2
    settings.PWD_POOL_PREPARE = True
    keeper = Keeper(size=2)
    # The keeper process retries a start that failed on its next pass; do the same so a
    # slow start on a busy machine does not leave the pool without its spare node.
    for _ in range(3):
        keeper.run_once()
        if PoolNode.objects.ready().count() >= 2:
            break
    else:
        pytest.fail("the pool did not fill to 2 ready nodes in 3 keeper passes")
    yield keeper
    close_keeper(engine, keeper)


@pytest.fixture
def sessions(engine):
    """Sessions made through services.create_session, removed from the engine after."""
    made: list[Session] = []

    async def create() -> Session:
        session = await services.create_session()
        made.append(session)
        return session

    yield create
    for session in made:
        engine.remove_session_objects(session.id)


async def test_a_new_session_gets_its_node1_prepared_in_the_background(engine, keeper, sessions):
    session = await sessions()
    await settled()

    row = await sync_to_async(prepared_row)(session)
    assert row is not None
    assert row.node_name == "node1"
    assert row.status == PoolNode.Status.PREPARED
    assert row.claimed_at is not None
    assert networks_of(engine, row.container_id) == {session.network_name}
    assert sh(engine, row.container_id, "hostname") == "node1"
    # The keeper counts it out of the pool and refills.
    assert await sync_to_async(keeper.run_once)() == 1
    unclaimed = PoolNode.objects.ready()
    assert await sync_to_async(unclaimed.count)() == 2


async def test_a_session_created_through_django_asgi_is_prepared(engine, keeper):
    # Django runs a request's sync work on a thread of its own that is shut down once the
    # response is sent; the preparation outlives the request and must not use it.
    communicator = HttpCommunicator(
        get_asgi_application(),
        "POST",
        "/api/sessions/",
        body=b"{}",
        headers=[(b"host", b"testserver"), (b"content-type", b"application/json")],
    )
    response = await communicator.get_response(timeout=30)
    assert response["status"] == 201, response["body"]
    session_id = json.loads(response["body"])["id"]
    try:
        await settled()
        row = await PoolNode.objects.filter(session_id=session_id).afirst()
        assert row is not None
        assert row.status == PoolNode.Status.PREPARED
    finally:
        await engine.run(engine.remove_session_objects, session_id)


async def test_the_add_hands_out_the_prepared_node_named_and_on_the_network(
    engine, keeper, sessions
):
    session = await sessions()
    await settled()
    prepared = await sync_to_async(prepared_row)(session)

    node1 = await services.add_node(session, settings.PWD_NODE_IMAGE)

    assert node1.container_id == prepared.container_id
    assert node1.ip == prepared.ip
    assert not await sync_to_async(PoolNode.objects.prepared_for(session).exists)()
    cid = node1.container_id
    assert sh(engine, cid, "hostname") == "node1"
    assert sh(engine, cid, "docker info --format '{{.Name}}'") == "node1"
    eth0 = sh(engine, cid, "ip -4 -o addr show dev eth0 | awk '{split($4,a,\"/\"); print a[1]}'")
    assert eth0 == node1.ip
    assert "pool-" not in sh(engine, cid, "cat /etc/hosts")
    # The login shell started under the final name: its prompt carries name and IP.
    terminal = Terminal(node1.terminal_path)
    connected, _ = await terminal.connect()
    assert connected
    try:
        await terminal.type("\r")
        await terminal.until_text(f"[node1] (local) root@{node1.ip} ~ #")
        assert "pool-" not in terminal.text
    finally:
        await terminal.close()
        await hubs.close_all()
    sh(engine, cid, "docker version --format '{{.Server.Version}}'")

    # With the pool refilled, node2 is prepared too, and the two reach each other by name.
    await sync_to_async(keeper.run_once)()
    await pool.prepare_soon(session)
    await settled()
    node2 = await services.add_node(session, settings.PWD_NODE_IMAGE)
    assert node2.name == "node2"
    assert networks_of(engine, node2.container_id) == {session.network_name}
    sh(engine, cid, "ping -c1 -W2 node2")
    sh(engine, node2.container_id, "ping -c1 -W2 node1")


async def test_an_add_right_after_the_create_waits_for_the_preparation(engine, keeper, sessions):
    session = await sessions()
    row = await sync_to_async(prepared_row)(session)
    assert row is not None  # claimed before create_session returned, attach under way

    node1 = await services.add_node(session, settings.PWD_NODE_IMAGE)

    assert node1.container_id == row.container_id
    assert sh(engine, node1.container_id, "hostname") == "node1"


async def test_an_add_of_another_name_leaves_the_prepared_node_for_later(engine, keeper, sessions):
    session = await sessions()
    await settled()
    prepared = await sync_to_async(prepared_row)(session)

    handle = await pool.take(session, "node3")

    assert handle is not None
    assert handle.container_id != prepared.container_id
    again = await sync_to_async(prepared_row)(session)
    assert (again.container_id, again.node_name) == (prepared.container_id, "node1")


async def test_ending_the_session_removes_the_prepared_node_and_its_row(engine, keeper, sessions):
    session = await sessions()
    await settled()
    row = await sync_to_async(prepared_row)(session)

    await services.end_session(session)

    assert engine.container_status(row.container_id) == "missing"
    assert not await sync_to_async(PoolNode.objects.filter(pk=row.pk).exists)()


async def test_ending_a_session_during_its_attach_ahead_waits_and_leaves_nothing(
    engine, keeper, sessions
):
    session = await sessions()
    row = await sync_to_async(prepared_row)(session)
    assert row is not None
    assert row.status == PoolNode.Status.PREPARING  # the attach is under way

    # A container removed mid-attach would leave the swarm holding the network for good.
    await services.end_session(session)

    assert engine.container_status(row.container_id) == "missing"
    networks = {n["Name"] for n in engine.list_objects().networks}
    assert session.network_name not in networks
    await settled()
    assert not await sync_to_async(PoolNode.objects.filter(pk=row.pk).exists)()


async def test_the_reaper_keeps_a_prepared_node_of_an_active_session(engine, keeper, sessions):
    session = await sessions()
    await settled()
    row = await sync_to_async(prepared_row)(session)
    later = timezone.now() + timedelta(minutes=5)

    report = await sync_to_async(Reaper(interval=1).run_once)(later)
    await sync_to_async(keeper.reconcile)(later)

    assert row.container_id not in report.removed_containers
    assert engine.container_status(row.container_id) == "running"
    assert await sync_to_async(prepared_row)(session) == row


async def test_the_reaper_removes_the_prepared_node_of_an_expired_session(engine, keeper, sessions):
    session = await sessions()
    await settled()
    row = await sync_to_async(prepared_row)(session)
    await sync_to_async(session.end)()

    report = await sync_to_async(Reaper(interval=1).run_once)()

    assert session.id in report.cleaned
    assert engine.container_status(row.container_id) == "missing"
    assert not await sync_to_async(PoolNode.objects.filter(pk=row.pk).exists)()


async def test_the_keeper_removes_what_an_ended_sessions_preparation_left(engine, keeper, sessions):
    session = await sessions()
    await settled()
    row = await sync_to_async(prepared_row)(session)
    # Ended, not cleaned yet (the reaper has not come by).
    await sync_to_async(session.end)()

    await sync_to_async(keeper.reconcile)()

    assert engine.container_status(row.container_id) == "missing"
    assert not await sync_to_async(PoolNode.objects.filter(pk=row.pk).exists)()


async def test_a_pool_without_a_node_to_spare_prepares_nothing(engine, keeper, sessions):
    first = await sessions()
    await settled()
    # One node left in a pool of two: it is kept for an add that has none prepared.
    second = await sessions()
    await settled()

    assert await sync_to_async(prepared_row)(first) is not None
    assert await sync_to_async(prepared_row)(second) is None
    unclaimed = PoolNode.objects.ready()
    assert await sync_to_async(unclaimed.count)() == 1


async def test_the_keeper_prepares_for_a_session_once_the_pool_is_full_again(
    engine, keeper, sessions
):
    await sessions()
    await settled()
    second = await sessions()  # the pool had no node to spare for it
    await settled()
    assert await sync_to_async(prepared_row)(second) is None

    assert await sync_to_async(keeper.run_once)() == 1  # refills first, prepares nothing
    assert await sync_to_async(prepared_row)(second) is None
    await sync_to_async(keeper.run_once)()  # full: prepares

    row = await sync_to_async(prepared_row)(second)
    assert row is not None
    assert (row.node_name, row.status) == ("node1", PoolNode.Status.PREPARED)
    assert networks_of(engine, row.container_id) == {second.network_name}
    node1 = await services.add_node(second, settings.PWD_NODE_IMAGE)
    assert node1.container_id == row.container_id


async def test_a_session_with_no_free_slot_prepares_nothing(engine, keeper, sessions):
    session = await sessions()
    await settled()
    await services.add_node(session, settings.PWD_NODE_IMAGE)
    await Session.objects.filter(pk=session.pk).aupdate(max_nodes=1)
    await sync_to_async(keeper.run_once)()

    await pool.prepare_soon(await Session.objects.aget(pk=session.pk))
    await settled()

    assert await sync_to_async(prepared_row)(session) is None


async def test_with_preparing_off_nothing_is_prepared(engine, keeper, sessions, settings):
    settings.PWD_POOL_PREPARE = False

    session = await sessions()
    await settled()
    node1 = await services.add_node(session, settings.PWD_NODE_IMAGE)

    assert not await sync_to_async(PoolNode.objects.attached_ahead().exists)()
    taken = await sync_to_async(list)(PoolNode.objects.exclude(status=PoolNode.Status.READY))
    assert [row.container_id for row in taken] == [node1.container_id]
    node_rows = Node.objects.filter(session=session)
    assert await sync_to_async(node_rows.count)() == 1
