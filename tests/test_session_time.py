"""Extending a session: the idle limit moves, the hard maximum never does, and every
viewer hears the new end."""

import asyncio
from datetime import timedelta

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import AsyncClient
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from pwd_site.routing import websocket_application
from sessions_app.models import Session
from tests.api_helpers import error_of, post

pytestmark = pytest.mark.django_db(transaction=True)

LIFETIME = timedelta(seconds=settings.PWD_SESSION_LIFETIME)
IDLE = timedelta(seconds=settings.PWD_IDLE_TIMEOUT)


async def a_session(*, age: timedelta, idle_for: timedelta, warned: bool = False) -> Session:
    """A session row (nothing on the engine: extending never reaches it)."""
    now = timezone.now()
    return await Session.objects.acreate(
        created_at=now - age,
        last_activity_at=now - idle_for,
        expiry_warned_at=now if warned else None,
    )


async def extend(session_id: str):
    return await post(AsyncClient(), f"/api/sessions/{session_id}/extend/")


async def listen(session_id: str) -> WebsocketCommunicator:
    viewer = WebsocketCommunicator(websocket_application, f"/ws/sessions/{session_id}/events/")
    connected, _ = await viewer.connect()
    assert connected
    return viewer


def at(text: str):
    return parse_datetime(text)


async def test_extend_moves_the_idle_limit_and_never_the_hard_maximum():
    session = await a_session(age=timedelta(minutes=40), idle_for=timedelta(minutes=25))
    before = session.expires_at
    hard_end = session.created_at + LIFETIME

    began = timezone.now()
    response = await extend(session.id)

    assert response.status_code == 200, response.content
    body = response.json()
    assert at(body["expires_at"]) > before
    assert at(body["expires_at"]) >= (began + IDLE).replace(microsecond=0)
    assert abs(at(body["hard_expires_at"]) - hard_end) < timedelta(milliseconds=1)
    row = await Session.objects.aget(pk=session.id)
    assert row.created_at == session.created_at
    assert row.last_activity_at >= began
    assert row.hard_expires_at == hard_end


async def test_extend_near_the_hard_end_stops_at_it():
    session = await a_session(age=LIFETIME - timedelta(minutes=20), idle_for=timedelta(minutes=28))
    hard_end = session.hard_expires_at

    response = await extend(session.id)

    assert response.status_code == 200, response.content
    body = response.json()
    assert at(body["expires_at"]) == at(body["hard_expires_at"])
    assert abs(at(body["expires_at"]) - hard_end) < timedelta(milliseconds=1)
    assert (await Session.objects.aget(pk=session.id)).created_at == session.created_at


async def test_extend_at_the_maximum_is_409_and_changes_nothing():
    session = await a_session(age=LIFETIME - timedelta(minutes=10), idle_for=timedelta(minutes=1))
    viewer = await listen(session.id)
    row = await Session.objects.aget(pk=session.id)  # connecting counted as activity

    response = await extend(session.id)

    assert response.status_code == 409, response.content
    error = error_of(response)
    assert error["code"] == "at_maximum"
    assert row.hard_expires_at.strftime("%Y-%m-%dT%H:%M:%S") in error["message"]
    after = await Session.objects.aget(pk=session.id)
    assert (after.created_at, after.last_activity_at, after.expiry_warned_at, after.ended_at) == (
        row.created_at,
        row.last_activity_at,
        row.expiry_warned_at,
        None,
    )
    assert await viewer.receive_nothing(0.5)
    await viewer.disconnect()


async def test_every_viewer_hears_the_new_end():
    session = await a_session(age=timedelta(minutes=40), idle_for=timedelta(minutes=25))
    viewers = [await listen(session.id), await listen(session.id)]

    response = await extend(session.id)

    assert response.status_code == 200, response.content
    for viewer in viewers:
        event = await viewer.receive_json_from(5)
        assert event == {"type": "session.extended", "expires_at": response.json()["expires_at"]}
        await viewer.disconnect()


async def test_extend_takes_back_a_warning_so_the_reaper_warns_again_before_the_new_end():
    session = await a_session(
        age=timedelta(hours=1), idle_for=IDLE - timedelta(minutes=1), warned=True
    )

    response = await extend(session.id)

    assert response.status_code == 200, response.content
    row = await Session.objects.aget(pk=session.id)
    assert row.expiry_warned_at is None
    soon_before_the_new_end = row.expires_at - timedelta(seconds=settings.PWD_EXPIRY_WARNING / 2)
    warned = [s.pk async for s in Session.objects.expiring(soon_before_the_new_end)]
    assert warned == [session.id]


async def test_an_ended_or_expired_session_cannot_be_extended():
    ended = await a_session(age=timedelta(minutes=5), idle_for=timedelta(0))
    await Session.objects.filter(pk=ended.pk).aupdate(ended_at=timezone.now())
    idle = await a_session(age=timedelta(hours=1), idle_for=IDLE + timedelta(seconds=1))

    for session in (ended, idle):
        response = await extend(session.id)
        assert response.status_code == 404, response.content
        assert error_of(response)["code"] == "session_not_found"
        row = await Session.objects.aget(pk=session.id)
        assert row.last_activity_at == session.last_activity_at


async def test_two_extends_at_once_both_answer_with_a_later_end():
    session = await a_session(age=timedelta(minutes=40), idle_for=timedelta(minutes=25))

    first, second = await asyncio.gather(extend(session.id), extend(session.id))

    assert {first.status_code, second.status_code} == {200}
    for response in (first, second):
        assert at(response.json()["expires_at"]) > session.expires_at


async def test_any_call_on_the_session_pushes_the_idle_limit_too():
    session = await a_session(age=timedelta(minutes=40), idle_for=timedelta(minutes=25))

    response = await AsyncClient().get(f"/api/sessions/{session.id}/")

    assert response.status_code == 200, response.content
    assert at(response.json()["expires_at"]) > session.expires_at
    hard_end = at(response.json()["hard_expires_at"])
    assert abs(hard_end - session.hard_expires_at) < timedelta(milliseconds=1)
