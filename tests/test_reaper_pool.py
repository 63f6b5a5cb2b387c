"""Pool containers against the real engine: the reaper leaves them to the keeper, their
one owner, which removes one no row knows once past the start grace."""

from datetime import timedelta

import pytest
from django.utils import timezone

from sessions_app import keeper as keepers
from sessions_app.reaper import Reaper

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def test_the_reaper_leaves_a_pool_container_with_no_row_to_the_keeper(engine, keeper):
    stray = engine.create_node(
        None, keepers.placeholder_name(), None, role=engine.ROLE_POOL, wait=False
    )
    much_later = timezone.now() + timedelta(hours=1)

    report = Reaper(interval=1).run_once(much_later)

    assert stray.container_id not in report.removed_containers
    assert engine.container_status(stray.container_id) == "running"
    keeper.reconcile(timezone.now() + keepers.orphan_grace() - timedelta(seconds=5))
    assert engine.container_status(stray.container_id) == "running"  # may still be starting
    keeper.reconcile(timezone.now() + keepers.orphan_grace() + timedelta(seconds=1))
    assert engine.container_status(stray.container_id) == "missing"
