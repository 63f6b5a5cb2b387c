"""The warm pool against the real engine: the keeper fills it, a session takes a node
that ends up like a fresh one, and everything that goes wrong falls back or is tidied."""

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from sessions_app import keeper as keepers
from sessions_app import pool
from sessions_app.models import Node, PoolNode

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def sh(engine, container_id: str, script: str) -> str:
    result = engine.exec_in_node(container_id, ["sh", "-c", script], timeout=30, max_output=65536)
    assert result.exit_code == 0, result.output
    return result.output.strip()


def pool_containers(engine) -> dict[str, dict]:
    return {
        c["Id"]: c
        for c in engine.list_objects().containers
        if c["Labels"].get(engine.LABEL_ROLE) == engine.ROLE_POOL
    }


def test_the_keeper_fills_the_pool_to_its_size(engine, keeper):
    keeper.size = 2

    assert keeper.run_once() == 2

    rows = list(PoolNode.objects.all())
    assert len(rows) == 2
    assert all(row.status == PoolNode.Status.READY and not row.claimed_at for row in rows)
    containers = pool_containers(engine)
    assert {row.container_id for row in rows} == set(containers)
    assert all(c["State"] == "running" for c in containers.values())
    assert keeper.run_once() == 0


async def test_a_taken_node_is_named_and_on_the_session_network_like_a_fresh_one(
    engine, keeper, session
):
    peer = await engine.run(engine.create_node, session.id, "node1", session.network_name)
    await sync_to_async(Node.objects.create)(
        session=session, name="node1", hostname="node1", container_id=peer.container_id
    )
    await sync_to_async(keeper.run_once)()

    handle = await pool.take(session, "node2")

    assert handle is not None
    cid = handle.container_id
    assert engine.container_status(cid) == "running"
    assert sh(engine, cid, "hostname") == "node2"
    assert sh(engine, cid, "docker info --format '{{.Name}}'") == "node2"
    eth0 = sh(engine, cid, "ip -4 -o addr show dev eth0 | awk '{split($4,a,\"/\"); print a[1]}'")
    assert eth0 == handle.ip
    assert handle.networks == {session.network_name: handle.ip}
    assert f"{handle.ip}\tnode2" in sh(engine, cid, "cat /etc/hosts")
    assert "pool-" not in sh(engine, cid, "cat /etc/hosts")
    # The held-back login shell runs now, so its prompt carries the real name.
    assert "bash -l" in sh(engine, cid, "ps -eo args")
    sh(engine, cid, "ping -c1 -W2 node1")
    sh(engine, peer.container_id, "ping -c1 -W2 node2")
    sh(engine, cid, "docker version --format '{{.Server.Version}}'")


async def test_a_taken_node_keeps_its_claimed_row_while_a_node_row_names_it(
    engine, keeper, session
):
    await sync_to_async(keeper.run_once)()
    handle = await pool.take(session, "node1")
    assert handle is not None
    later = timezone.now() + timedelta(minutes=10)
    rows = PoolNode.objects.filter(container_id=handle.container_id)

    # Claimed a moment ago, no Node row yet (the web process is about to write it).
    await sync_to_async(keeper.reconcile)(timezone.now())
    assert await sync_to_async(rows.exists)()

    node = await sync_to_async(Node.objects.create)(
        session=session, name="node1", hostname="node1", container_id=handle.container_id
    )
    await sync_to_async(keeper.reconcile)(later)
    assert await sync_to_async(rows.exists)()
    assert engine.container_status(handle.container_id) == "running"

    # The node is removed (or its session cleaned): the keeper tidies up after it.
    await sync_to_async(node.delete)()
    await sync_to_async(keeper.reconcile)(later)
    assert not await sync_to_async(rows.exists)()
    assert engine.container_status(handle.container_id) == "missing"


async def test_the_pool_refills_after_a_take(engine, keeper, session):
    await sync_to_async(keeper.run_once)()
    taken = await pool.take(session, "node1")
    assert taken is not None

    assert await sync_to_async(keeper.run_once)() == 1

    ready = await sync_to_async(list)(PoolNode.objects.ready())
    assert len(ready) == 1
    assert ready[0].container_id != taken.container_id


async def test_an_empty_pool_makes_take_fall_back(engine, keeper, session):
    assert await pool.take(session, "node1") is None


async def test_a_switched_off_pool_makes_take_fall_back(engine, keeper, session, settings):
    await sync_to_async(keeper.run_once)()
    settings.PWD_POOL_SIZE = 0

    assert await pool.take(session, "node1") is None


async def test_a_node_that_cannot_be_moved_is_removed_and_take_falls_back(engine, keeper, session):
    await sync_to_async(keeper.run_once)()
    (row,) = await sync_to_async(list)(PoolNode.objects.all())
    session.network_name = "pwd-no-such-network"

    assert await pool.take(session, "node1") is None

    assert engine.container_status(row.container_id) == "missing"
    assert not await sync_to_async(PoolNode.objects.exists)()


def test_a_pool_container_removed_from_outside_is_dropped_and_replaced(engine, keeper):
    keeper.run_once()
    (row,) = PoolNode.objects.all()
    engine.remove_node(row.container_id)

    assert keeper.run_once() == 1

    (replacement,) = PoolNode.objects.all()
    assert replacement.container_id != row.container_id
    assert set(pool_containers(engine)) == {replacement.container_id}


def test_a_pool_container_no_row_knows_is_removed(engine, keeper):
    stray = engine.create_node(
        None, keepers.placeholder_name(), None, role=engine.ROLE_POOL, wait=False
    )

    keeper.reconcile(timezone.now())
    assert engine.container_status(stray.container_id) == "running"  # may still be starting

    keeper.reconcile(timezone.now() + keepers.orphan_grace() + timedelta(seconds=1))
    assert engine.container_status(stray.container_id) == "missing"


def test_a_smaller_pool_size_retires_the_newest_nodes(engine, keeper):
    keeper.size = 2
    keeper.run_once()
    oldest = PoolNode.objects.order_by("created_at").first()

    keeper.size = 1
    keeper.reconcile()

    assert list(PoolNode.objects.values_list("container_id", flat=True)) == [oldest.container_id]
    assert set(pool_containers(engine)) == {oldest.container_id}
