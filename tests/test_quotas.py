"""The quotas' own rules in the database alone: the rate's wording comes from the
pages' one duration helper, and one count of nodes in use decides both a cold add and
an attach ahead."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from front import wording
from sessions_app import quotas
from sessions_app.errors import TooManyRequests
from sessions_app.models import Node, PoolNode, Session

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("period", "worded"),
    [(3600, "hour"), (86400, "day"), (60, "minute"), (1800, "30 minutes"), (90, "90 seconds")],
)
def test_the_rate_limit_words_its_period_like_the_pages(settings, period, worded):
    settings.PWD_SESSIONS_PER_IP = (2, period)
    now = timezone.now()
    for _ in range(2):
        Session.objects.create(client_key="k", created_at=now - timedelta(seconds=1))

    with pytest.raises(TooManyRequests) as refused:
        quotas.check_new_session("k", now)

    assert refused.value.code == "rate_limited"
    assert f"(2 per {worded})" in refused.value.message
    assert wording.per(period) == worded


def _node(session: Session, name: str, status: str = Node.Status.RUNNING) -> Node:
    return Node.objects.create(session=session, name=name, hostname=name, status=status)


def test_nodes_in_use_are_the_node_rows_not_gone():
    session = Session.objects.create()
    _node(session, "node1")
    _node(session, "node2", Node.Status.STARTING)
    _node(session, "node3", Node.Status.GONE)
    PoolNode.objects.create(container_id="ready", image="i")
    PoolNode.objects.create(
        container_id="ahead", image="i", status=PoolNode.Status.PREPARED, session=session
    )

    assert quotas.nodes_in_use() == 2


def test_a_cold_add_and_an_attach_ahead_stop_at_the_same_count(settings):
    settings.PWD_MAX_TOTAL_NODES = 3
    settings.PWD_POOL_SIZE = 2
    session = Session.objects.create()
    _node(session, "node1")
    _node(session, "node2")

    with transaction.atomic():
        quotas.check_new_node()  # 2 of 3: a node may be added
        assert quotas.may_prepare_node()  # and one attached ahead
    PoolNode.objects.create(
        container_id="ahead", image="i", status=PoolNode.Status.PREPARING, session=session
    )
    with transaction.atomic():
        # The one attached ahead is a node in waiting: none more is attached ahead ...
        assert not quotas.may_prepare_node()
        # ... while the add, which may well be handed that very node, is still let in.
        quotas.check_new_node()
    _node(session, "node3")
    with transaction.atomic(), pytest.raises(TooManyRequests) as refused:
        quotas.check_new_node()
    assert refused.value.code == "at_capacity"


def test_attach_ahead_stops_at_the_pool_size(settings):
    settings.PWD_MAX_TOTAL_NODES = 100
    settings.PWD_POOL_SIZE = 1
    session = Session.objects.create()
    PoolNode.objects.create(
        container_id="ahead", image="i", status=PoolNode.Status.PREPARED, session=session
    )

    with transaction.atomic():
        assert not quotas.may_prepare_node()
