"""Readable container names against the real engine: a pool node is named for the pool
until a session takes it, then for its session and node, as a cold node is from the
start; a name still held gets a suffix; and reconciliation, which goes by labels and
ids, still removes a renamed pool node whose session ended."""

import re
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.utils import timezone

from sessions_app import keeper as keepers
from sessions_app import pool
from sessions_app.models import Node, PoolNode, Session
from sessions_app.reaper import Reaper
from tests.api_helpers import add_node

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def name_of(engine, container_id: str) -> str:
    return engine.client().api.inspect_container(container_id)["Name"].removeprefix("/")


def prefix() -> str:
    return f"pwd-{settings.PWD_INSTANCE}-"


def listed(engine, **filters: str) -> set[str]:
    """Ids of the containers ``docker ps -a --filter`` lists for ``filters``."""
    return {c["Id"] for c in engine.client().api.containers(all=True, filters=filters)}


async def take(engine, keeper, session: Session, name: str) -> Node:
    """A node ``name`` of ``session`` taken from the pool, recorded as the web side does."""
    await sync_to_async(keeper.run_once)()
    handle = await pool.take(session, name)
    assert handle is not None
    return await Node.objects.acreate(
        session=session,
        name=name,
        hostname=name,
        container_id=handle.container_id,
        status=Node.Status.RUNNING,
    )


async def test_a_pool_node_is_named_for_the_pool_until_a_session_takes_it(engine, keeper, session):
    await sync_to_async(keeper.run_once)()
    (row,) = await sync_to_async(list)(PoolNode.objects.all())
    assert re.fullmatch(rf"{prefix()}pool-[0-9a-f]{{8}}", name_of(engine, row.container_id))

    handle = await pool.take(session, "node2")

    assert handle is not None
    assert handle.container_id == row.container_id
    name = f"{prefix()}{session.short_id}-node2"
    assert name_of(engine, handle.container_id) == name
    assert session.id not in name
    # What docs/operations.md tells an operator to type.
    assert handle.container_id in listed(engine, name=f"{prefix()}{session.short_id}-")
    assert handle.container_id in listed(engine, network=session.network_name)


def test_a_node_prepared_for_a_session_is_named_for_it_before_it_is_handed_out(
    engine, keeper, session
):
    keeper.run_once()
    row = pool.claim_for_session(session.id, timezone.now())
    assert row is not None

    assert async_to_sync(pool.prepare)(row, session)

    assert name_of(engine, row.container_id) == f"{prefix()}{session.short_id}-{row.node_name}"


async def test_a_cold_node_is_named_for_its_session_and_node(engine, sessions):
    session_id = (await sessions.create())["id"]

    assert (await add_node(sessions.client, session_id)).status_code == 201

    node = await Node.objects.select_related("session").aget(session_id=session_id)
    assert name_of(engine, node.container_id) == f"{prefix()}{node.session.short_id}-node1"


async def test_a_node_removed_and_added_again_gets_its_name_back(engine, sessions):
    session_id = (await sessions.create())["id"]
    assert (await add_node(sessions.client, session_id)).status_code == 201
    first = await Node.objects.aget(session_id=session_id)

    removed = await sessions.client.delete(f"/api/sessions/{session_id}/nodes/node1/")
    assert removed.status_code == 204, removed.content
    again = await add_node(sessions.client, session_id)

    assert again.status_code == 201, again.content
    node = await Node.objects.aget(session_id=session_id)
    assert node.name == "node1"
    assert node.container_id != first.container_id
    assert name_of(engine, node.container_id) == f"{prefix()}{session_id[:6]}-node1"


async def test_a_name_another_container_still_holds_gets_a_suffix(engine, sessions):
    session_id = (await sessions.create())["id"]
    name = f"{prefix()}{session_id[:6]}-node1"
    holder = await engine.run(
        engine.create_node, None, "node1", None, role=engine.ROLE_PROBE, wait=False, name=name
    )

    response = await add_node(sessions.client, session_id)

    assert response.status_code == 201, response.content
    node = await Node.objects.aget(session_id=session_id)
    assert re.fullmatch(rf"{re.escape(name)}-[0-9a-f]{{4}}", name_of(engine, node.container_id))
    assert name_of(engine, holder.container_id) == name
    # A rename to a held name (a pool node's, on no network yet) is suffixed the same way.
    pooled = await engine.run(
        engine.create_node, None, "pool-x", None, role=engine.ROLE_POOL, wait=False
    )
    given = await engine.run(engine.rename_container, pooled.container_id, name)
    assert re.fullmatch(rf"{re.escape(name)}-[0-9a-f]{{4}}", given)
    assert name_of(engine, pooled.container_id) == given


def test_probe_containers_are_named_as_probes(engine):
    handle = engine.create_node(None, "node1", None, role=engine.ROLE_PROBE, wait=False)

    assert re.fullmatch(rf"{prefix()}probe-[0-9a-f]{{8}}", name_of(engine, handle.container_id))


async def test_the_reaper_removes_a_taken_pool_node_when_its_session_ends(engine, keeper, session):
    node = await take(engine, keeper, session, "node1")
    await sync_to_async(session.end)()

    report = await sync_to_async(Reaper(interval=1).run_once, thread_sensitive=False)()

    assert report.cleaned == [session.id]
    assert engine.container_status(node.container_id) == "missing"
    assert not listed(engine, name=f"{prefix()}{session.short_id}-")


async def test_a_taken_pool_node_of_a_session_whose_clean_up_was_cut_short_goes(
    engine, keeper, session
):
    node = await take(engine, keeper, session, "node1")
    # A reaper claimed the clean-up (cleaned_at) and died before doing it: the node row
    # is still there and names the container, which carries only pool labels.
    await Session.objects.filter(pk=session.pk).aupdate(
        ended_at=timezone.now(), cleaned_at=timezone.now()
    )

    later = timezone.now() + keepers.CLAIM_GRACE + timedelta(seconds=1)
    await sync_to_async(keeper.reconcile)(later)
    report = await sync_to_async(Reaper(interval=1).run_once, thread_sensitive=False)()

    assert engine.container_status(node.container_id) == "missing"
    assert not await PoolNode.objects.filter(container_id=node.container_id).aexists()
    # With the node gone, the reaper could remove the network too.
    assert report.removed_networks == [session.network_name]
