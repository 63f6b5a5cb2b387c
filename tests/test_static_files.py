"""Static files come through an async middleware, so API calls never hop to a thread."""

from unittest import mock

import pytest
from asgiref.sync import AsyncToSync
from django.test import AsyncClient

pytestmark = pytest.mark.django_db(transaction=True)


async def test_an_api_call_runs_its_async_view_without_a_thread_hop():
    calls = []
    original = AsyncToSync.__call__

    def counting(self, *args, **kwargs):
        calls.append(self)
        return original(self, *args, **kwargs)

    with mock.patch.object(AsyncToSync, "__call__", counting):
        response = await AsyncClient().get("/api/schema/")
    assert response.status_code == 200
    assert calls == []


async def test_xterm_is_served_through_the_async_middleware():
    response = await AsyncClient().get("/static/vendor/xterm/lib/xterm.js")
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert len(body) > 100_000


async def test_an_unknown_static_path_is_a_404():
    response = await AsyncClient().get("/static/vendor/xterm/lib/nothing-here.js")
    assert response.status_code == 404
