"""Capacity against real counts: node and session rows in the database, and the memory
the real engine's host reports."""

from datetime import timedelta

import pytest
from django.utils import timezone

from sessions_app import capacity
from sessions_app.models import Node, PoolNode, Session

pytestmark = pytest.mark.django_db(transaction=True)

MIB = 1024 * 1024


def _meminfo(field: str) -> int:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/meminfo")


def _session(**fields) -> Session:
    return Session.objects.create(**fields)


def _nodes(session: Session, count: int, status: str = Node.Status.RUNNING) -> None:
    start = session.nodes.count() + 1
    for number in range(start, start + count):
        name = f"node{number}"
        Node.objects.create(session=session, name=name, hostname=name, status=status)


@pytest.fixture
def roomy_memory(settings, engine):
    # Nodes so small that memory never binds: the caps decide.
    settings.PWD_NODE_MEMORY = MIB
    settings.PWD_MAX_SESSIONS = 100
    settings.PWD_MAX_TOTAL_NODES = 100
    return settings


def test_it_counts_the_nodes_left_under_the_cap(roomy_memory):
    roomy_memory.PWD_MAX_TOTAL_NODES = 10
    session = _session()
    _nodes(session, 3)
    _nodes(_session(), 1, Node.Status.STARTING)

    assert capacity.seats_that_fit(1) == 6
    assert capacity.seats_that_fit(2) == 3
    assert capacity.seats_that_fit(4) == 1


def test_gone_nodes_and_pool_nodes_take_no_place_under_the_cap(roomy_memory):
    roomy_memory.PWD_MAX_TOTAL_NODES = 4
    session = _session()
    _nodes(session, 2, Node.Status.GONE)
    PoolNode.objects.create(container_id="c1", image="pwd-node")

    assert capacity.seats_that_fit(1) == 4


def test_reserved_nodes_are_taken_off_first(roomy_memory):
    roomy_memory.PWD_MAX_TOTAL_NODES = 10
    _nodes(_session(), 2)

    assert capacity.seats_that_fit(3) == 2
    assert capacity.seats_that_fit(3, reserved_nodes=3) == 1
    assert capacity.seats_that_fit(3, reserved_nodes=8) == 0
    assert capacity.seats_that_fit(1, reserved_nodes=50) == 0


def test_each_seat_is_a_session_under_the_session_cap(roomy_memory):
    roomy_memory.PWD_MAX_SESSIONS = 4
    _session()
    _session()
    _session(ended_at=timezone.now())
    _session(last_activity_at=timezone.now() - timedelta(days=1))  # idle past its limit

    assert capacity.seats_that_fit(1) == 2
    assert capacity.seats_that_fit(1, reserved_sessions=1) == 1
    assert capacity.seats_that_fit(1, reserved_sessions=5) == 0


def test_the_hosts_memory_bounds_the_nodes(settings, engine):
    settings.PWD_MAX_TOTAL_NODES = 100
    total = engine.host_memory().total
    # Nodes as large as the whole host: its available memory holds none.
    settings.PWD_NODE_MEMORY = total

    assert capacity.seats_that_fit(1) == 0
    snapshot = capacity.snapshot()
    assert snapshot["nodes"]["free"] == 0
    assert snapshot["nodes"]["bound"] == "memory"
    assert snapshot["hosts"][0]["nodes_that_fit"] == 0


def test_the_host_memory_is_the_engine_hosts(engine):
    memory = engine.host_memory()

    assert memory.total == _meminfo("MemTotal")
    assert memory.available is not None
    assert 0 < memory.available <= memory.total


def test_a_node_of_half_the_available_memory_fits_at_most_twice(settings, engine):
    settings.PWD_MAX_TOTAL_NODES = 100
    settings.PWD_NODE_MEMORY = engine.host_memory().available // 2

    # Available memory moves with whatever else the machine runs, so 1 or 2 (never more).
    assert capacity.seats_that_fit(1) in (1, 2)


def test_a_seat_larger_than_a_session_may_be_fits_nowhere(roomy_memory):
    roomy_memory.PWD_MAX_NODES = 5

    assert capacity.seats_that_fit(5) == 20
    assert capacity.seats_that_fit(6) == 0
    with pytest.raises(ValueError, match="nodes_per_seat"):
        capacity.seats_that_fit(0)


def test_the_snapshot_lists_one_local_host_with_its_nodes(roomy_memory):
    roomy_memory.PWD_MAX_TOTAL_NODES = 10
    roomy_memory.PWD_MAX_SESSIONS = 5
    session = _session()
    _nodes(session, 2)
    _nodes(session, 1, Node.Status.STARTING)
    PoolNode.objects.create(container_id="c1", image="pwd-node")
    PoolNode.objects.create(container_id="c2", image="pwd-node", status=PoolNode.Status.TAKEN)

    snapshot = capacity.snapshot(nodes_per_seat=3)

    [host] = snapshot["hosts"]
    assert host["name"] == "local"
    assert host["nodes"] == 3
    assert host["pool_nodes"] == 1
    assert host["memory_total"] == _meminfo("MemTotal")
    assert snapshot["nodes"] == {
        "used": 3,
        "free": 7,
        "limit": 10,
        "node_memory": MIB,
        "by_status": {"running": 2, "starting": 1},
        "bound": "nodes",
    }
    assert snapshot["sessions"] == {"active": 1, "free": 4, "limit": 5}
    assert snapshot["seats"] == {"nodes_per_seat": 3, "fit": 2}
