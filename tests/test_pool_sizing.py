"""The keeper's pool size follows the rate of takes, within PWD_POOL_SIZE, PWD_POOL_MAX
and the memory budget PWD_POOL_MEMORY (sessions_app/pool_sizing.py), on the real
database's pool rows."""

from datetime import timedelta

import pytest
from django.utils import timezone

from sessions_app.models import PoolNode
from sessions_app.pool_sizing import PoolSizer

pytestmark = pytest.mark.django_db


def _taken(count: int, ago: timedelta) -> None:
    at = timezone.now() - ago
    for i in range(count):
        PoolNode.objects.create(
            container_id=f"taken-{ago.total_seconds()}-{i}",
            image="pwd-node",
            status=PoolNode.Status.TAKEN,
            claimed_at=at,
        )


def _sizer(minimum: int = 2, start_seconds: float = 4.0) -> PoolSizer:
    sizer = PoolSizer(minimum)
    sizer.start_seconds = start_seconds
    sizer._memory_read_at = float("inf")  # no ready node to measure here
    return sizer


def test_with_no_takes_the_pool_is_its_minimum(settings):
    settings.PWD_POOL_MAX = 8
    assert _sizer().target() == 2


def test_it_grows_by_the_nodes_taken_during_one_start(settings):
    settings.PWD_POOL_MAX = 8
    # 45 takes in the last 45 s: one a second, 4 s starts: 4 more nodes.
    _taken(45, timedelta(seconds=10))
    _taken(30, timedelta(minutes=5))  # too long ago to count

    assert _sizer().take_rate() == pytest.approx(1.0)
    assert _sizer().target() == 6


def test_it_stays_within_the_maximum_and_the_memory_budget(settings):
    _taken(90, timedelta(seconds=5))
    settings.PWD_POOL_MAX = 5
    settings.PWD_POOL_MEMORY = 10 * 1024**3
    assert _sizer().target() == 5

    settings.PWD_POOL_MAX = 50
    settings.PWD_POOL_MEMORY = 256 * 1024**2
    sizer = _sizer()
    sizer.node_memory = 64 * 1024**2
    assert sizer.target() == 4


def test_the_budget_never_takes_it_below_the_minimum_and_a_fixed_size_stays(settings):
    _taken(90, timedelta(seconds=5))
    settings.PWD_POOL_MAX = 1
    settings.PWD_POOL_MEMORY = 1
    assert _sizer(minimum=3).target() == 3
    assert PoolSizer(2, fixed=True).target() == 2


def test_retired_nodes_are_not_takes(settings):
    settings.PWD_POOL_MAX = 8
    PoolNode.objects.create(
        container_id="retired",
        image="pwd-node",
        status=PoolNode.Status.RETIRING,
        claimed_at=timezone.now(),
    )
    assert _sizer().take_rate() == 0


def test_a_start_moves_the_estimate_toward_what_it_took():
    sizer = _sizer(start_seconds=4.0)
    for _ in range(20):
        sizer.started(10.0)
    assert 9.5 < sizer.start_seconds <= 10.0
