"""Live stats: the viewers of a session get each running node's CPU and memory, read
from the engine by one stream per node while someone watches, and by none otherwise."""

import asyncio
import os
import statistics
import time

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings

from pwd_site.routing import websocket_application
from sessions_app import stats as live_stats
from sessions_app.engine import stats as engine_stats
from sessions_app.models import Node
from tests.api_helpers import add_node, post

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]


async def listen(session_id: str) -> WebsocketCommunicator:
    viewer = WebsocketCommunicator(websocket_application, f"/ws/sessions/{session_id}/events/")
    connected, _ = await viewer.connect()
    assert connected
    return viewer


async def stats_until(viewer, done, within: float = 60, most: int = 500) -> list[dict]:
    """The node.stats events heard until ``done(events)`` holds (bounded in time and count)."""
    heard: list[dict] = []
    deadline = time.monotonic() + within
    for _ in range(most):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            event = await viewer.receive_json_from(left)
        except TimeoutError:
            break
        if event.get("type") == "node.stats":
            heard.append(event)
            if done(heard):
                return heard
    raise AssertionError(f"not done after {len(heard)} node.stats events: {heard[-5:]}")


def names(events: list[dict]) -> set[str]:
    return {event["name"] for event in events}


async def settled(check, within: float = 10) -> bool:
    """Whether ``check()`` holds within ``within`` seconds (polled, bounded)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def containers(session_id: str) -> dict[str, str]:
    return {n.name: n.container_id async for n in Node.objects.filter(session_id=session_id)}


async def test_each_node_of_a_watched_session_has_stats_and_unwatched_ones_are_not_read(sessions):
    watched = (await sessions.create())["id"]
    unwatched = (await sessions.create())["id"]
    for session_id in (watched, unwatched):
        assert (await add_node(sessions.client, session_id)).status_code == 201
    assert live_stats.reading() == {}
    assert engine_stats.open_streams() == 0

    viewer = await listen(watched)
    # A node added while someone watches gets its reader too.
    assert (await add_node(sessions.client, watched)).status_code == 201
    heard = await stats_until(viewer, lambda events: names(events) == {"node1", "node2"})

    for event in heard:
        assert set(event) == {"type", "name", "cpu_percent", "memory_bytes", "memory_limit_bytes"}
        assert isinstance(event["cpu_percent"], float)
        assert event["cpu_percent"] >= 0
        assert 0 < event["memory_bytes"] < event["memory_limit_bytes"]
        assert event["memory_limit_bytes"] == settings.PWD_NODE_MEMORY
    ids = await containers(watched)
    assert live_stats.reading() == {watched: set(ids.values())}
    assert engine_stats.open_streams() == 2
    other = (await containers(unwatched))["node1"]
    assert all(other not in read for read in live_stats.reading().values())

    await viewer.disconnect()

    assert await settled(lambda: engine_stats.open_streams() == 0), engine_stats.open_streams()
    assert live_stats.reading() == {}


async def test_readers_follow_the_nodes_and_stop_with_the_last_viewer(sessions):
    session_id = (await sessions.create())["id"]
    for _ in range(2):
        assert (await add_node(sessions.client, session_id)).status_code == 201
    ids = await containers(session_id)
    first, second = await listen(session_id), await listen(session_id)
    await stats_until(first, lambda events: names(events) == {"node1", "node2"})
    assert engine_stats.open_streams() == 2  # two viewers, still one reader per node

    await sessions.client.delete(f"/api/sessions/{session_id}/nodes/node2/")

    assert await settled(lambda: live_stats.reading() == {session_id: {ids["node1"]}})
    assert await settled(lambda: engine_stats.open_streams() == 1)
    await first.disconnect()
    await asyncio.sleep(0)
    assert live_stats.reading() == {session_id: {ids["node1"]}}
    await second.disconnect()
    assert await settled(lambda: engine_stats.open_streams() == 0)
    assert live_stats.reading() == {}


def busier(events: list[dict]) -> bool:
    """node1 (busy) clearly above node2 (idle) over their last three readings; the machine
    is shared, so a busy loop may get a tenth of a CPU, but an idle node gets less still."""
    idle = [e["cpu_percent"] for e in events if e["name"] == "node2"][-3:]
    busy = [e["cpu_percent"] for e in events if e["name"] == "node1"][-3:]
    if len(idle) < 3 or len(busy) < 3:
        return False
    return statistics.median(busy) > max(3.0, 2 * statistics.median(idle))


async def test_a_busy_node_shows_more_cpu_than_an_idle_one(sessions):
    session_id = (await sessions.create())["id"]
    for _ in range(2):
        assert (await add_node(sessions.client, session_id)).status_code == 201
    viewer = await listen(session_id)
    busy = asyncio.create_task(
        post(
            sessions.client,
            f"/api/sessions/{session_id}/nodes/node1/exec/",
            {"command": ["timeout", "40", "sh", "-c", "while :; do :; done"], "timeout": 60},
        )
    )
    try:
        heard = await stats_until(viewer, busier)
    finally:
        ran = await busy
        await viewer.disconnect()

    assert ran.status_code == 200, ran.content
    assert all(0 <= e["cpu_percent"] <= 100 * (os.cpu_count() or 1) for e in heard), heard


async def test_a_node_removed_from_outside_loses_its_reader_and_viewers_hear_it_gone(
    sessions, engine
):
    session_id = (await sessions.create())["id"]
    assert (await add_node(sessions.client, session_id)).status_code == 201
    container = (await containers(session_id))["node1"]
    viewer = await listen(session_id)
    await stats_until(viewer, lambda events: names(events) == {"node1"})

    await engine.run(engine.remove_node, container)

    gone = None
    for _ in range(100):
        event = await viewer.receive_json_from(30)
        if event.get("type") == "node.gone":
            gone = event
            break
    assert gone == {"type": "node.gone", "name": "node1"}
    assert await settled(lambda: engine_stats.open_streams() == 0)
    assert live_stats.reading() == {session_id: set()}
    assert (await Node.objects.aget(session_id=session_id, name="node1")).status == "gone"
    await viewer.disconnect()
