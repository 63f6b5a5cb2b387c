"""PoolNode's named states and their moves, in the database alone: a ready node goes to
exactly one claimer, each move happens once, and the data migration names the states
the old columns encoded."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from sessions_app import pool
from sessions_app.models import Node, PoolNode, Session

pytestmark = pytest.mark.django_db(transaction=True)

Status = PoolNode.Status
BEFORE = ("sessions_app", "0006_session_setup_started_at")
AFTER = ("sessions_app", "0007_poolnode_status")


def ready_node(container_id: str, image: str = "pwd-node", **fields) -> PoolNode:
    return PoolNode.objects.create(container_id=container_id, image=image, **fields)


def test_a_claim_takes_the_oldest_ready_node_of_the_image_and_only_once():
    now = timezone.now()
    ready_node("newer", created_at=now)
    ready_node("older", created_at=now - timedelta(minutes=1))
    ready_node("other-image", image="other", created_at=now - timedelta(minutes=2))

    first = PoolNode.objects.ready("pwd-node").claim(Status.TAKEN, now)
    second = PoolNode.objects.ready("pwd-node").claim(Status.TAKEN, now)
    third = PoolNode.objects.ready("pwd-node").claim(Status.TAKEN, now)

    assert (first.container_id, first.status, first.claimed_at) == ("older", Status.TAKEN, now)
    assert second.container_id == "newer"
    assert third is None
    assert list(PoolNode.objects.ready().values_list("container_id", flat=True)) == ["other-image"]


def test_a_claim_loses_a_row_another_claimer_moved_first():
    row = ready_node("c1")
    stale = PoolNode.objects.get(pk=row.pk)
    assert PoolNode.objects.filter(pk=row.pk).claim(Status.RETIRING) is not None

    assert PoolNode.objects.filter(pk=stale.pk).claim(Status.TAKEN) is None
    assert PoolNode.objects.get(pk=row.pk).status == Status.RETIRING


def test_a_node_attached_ahead_is_prepared_then_handed_out_once():
    session = Session.objects.create()
    ready_node("c1")
    row = PoolNode.objects.ready().claim(Status.PREPARING, session=session, node_name="node1")
    assert list(PoolNode.objects.prepared_for(session)) == [row]
    assert list(PoolNode.objects.prepared_for(session.pk)) == [row]

    assert row.mark_prepared("10.0.0.5")
    assert not PoolNode.objects.get(pk=row.pk).mark_prepared("10.0.0.6")
    twin = PoolNode.objects.get(pk=row.pk)
    assert row.hand_out()
    assert not twin.hand_out()

    row.refresh_from_db()
    assert (row.status, row.session_id, row.node_name, row.ip) == (
        Status.TAKEN,
        None,
        "",
        "10.0.0.5",
    )
    assert not PoolNode.objects.attached_ahead().exists()


def test_a_preparation_given_up_meanwhile_is_not_marked_prepared():
    session = Session.objects.create()
    ready_node("c1")
    row = PoolNode.objects.ready().claim(Status.PREPARING, session=session, node_name="node1")
    assert PoolNode.objects.get(pk=row.pk).drop()

    assert not row.mark_prepared("10.0.0.5")
    assert not row.drop()


def test_drop_keeps_a_row_that_moved_since_it_was_read():
    session = Session.objects.create()
    ready_node("c1")
    row = PoolNode.objects.ready().claim(Status.PREPARING, session=session, node_name="node1")
    PoolNode.objects.get(pk=row.pk).mark_prepared("10.0.0.5")

    assert not row.drop()  # read while preparing; it is prepared now
    assert PoolNode.objects.filter(pk=row.pk).exists()


def test_an_add_and_an_attach_ahead_choose_names_the_same_way(settings):
    settings.PWD_POOL_SIZE = 1
    settings.PWD_NODE_IMAGE = "pwd-node"
    session = Session.objects.create(max_nodes=3, network_name="net")
    Node.objects.create(session=session, name="node1", hostname="node1")
    Node.objects.create(session=session, name="node3", hostname="node3")
    ready_node("c1")

    row = pool.claim_for_session(session.pk, timezone.now())
    with transaction.atomic():
        slot = Session.objects.next_slot(session.pk)

    assert (row.status, row.node_name) == (Status.PREPARING, "node2")
    # The add of that name finds this node attached ahead for it.
    assert (slot.session, slot.name) == (session, "node2")
    # One per session: a second claim finds the first.
    ready_node("c2")
    assert pool.claim_for_session(session.pk, timezone.now()) is None


def test_no_attach_ahead_for_a_session_without_a_free_name(settings):
    settings.PWD_POOL_SIZE = 1
    settings.PWD_NODE_IMAGE = "pwd-node"
    session = Session.objects.create(max_nodes=1, network_name="net")
    Node.objects.create(session=session, name="node1", hostname="node1")
    ready_node("c1")

    assert pool.claim_for_session(session.pk, timezone.now()) is None
    assert PoolNode.objects.ready().count() == 1


def test_the_migration_names_the_states_the_columns_encoded():
    executor = MigrationExecutor(connection)
    # Every app's latest: going back to BEFORE also unapplies the apps that depend on
    # sessions_app (workshops), which must come back with it.
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate([BEFORE])
    try:
        old = MigrationExecutor(connection).loader.project_state([BEFORE]).apps
        OldSession = old.get_model("sessions_app", "Session")
        OldPoolNode = old.get_model("sessions_app", "PoolNode")
        now = timezone.now()
        a, b = OldSession.objects.create(id="a"), OldSession.objects.create(id="b", port_token="b")
        OldPoolNode.objects.create(container_id="ready", image="i", ready_at=now)
        OldPoolNode.objects.create(container_id="taken", image="i", ready_at=now, claimed_at=now)
        OldPoolNode.objects.create(
            container_id="preparing", image="i", ready_at=now, claimed_at=now, session=a
        )
        OldPoolNode.objects.create(
            container_id="prepared",
            image="i",
            ready_at=now,
            claimed_at=now,
            session=b,
            node_name="node1",
            prepared_at=now,
        )

        MigrationExecutor(connection).migrate([AFTER])
        new = MigrationExecutor(connection).loader.project_state([AFTER]).apps
        statuses = dict(
            new.get_model("sessions_app", "PoolNode").objects.values_list("container_id", "status")
        )
        assert statuses == {
            "ready": "ready",
            "taken": "taken",
            "preparing": "preparing",
            "prepared": "prepared",
        }

        # And back: the columns say the same again.
        MigrationExecutor(connection).migrate([BEFORE])
        rows = {row.container_id: row for row in OldPoolNode.objects.all()}
        assert all(row.ready_at is not None for row in rows.values())
        assert rows["prepared"].prepared_at is not None
        assert rows["preparing"].prepared_at is None
    finally:
        OldPoolNode.objects.all().delete()
        OldSession.objects.all().delete()
        MigrationExecutor(connection).migrate(latest)
