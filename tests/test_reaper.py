"""The reaper: ends idle sessions leaving nothing on the engine, removes labelled
orphans, marks nodes lost from outside as gone, and is safe to run twice at once."""

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from pwd_site.routing import websocket_application
from sessions_app import reaper as reaper_module
from sessions_app.models import Node, Session
from sessions_app.reaper import Reaper
from tests.api_helpers import add_node
from tests.live_server import ROOT, live_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _lifecycle_only(monkeypatch):
    """Viewers here hear the lifecycle only: no stats readers or port watches start in
    this process (tests/test_stats.py and test_ports.py test those). Their own events,
    and a stats reader marking a vanished node gone first, would race the reaper's."""
    from sessions_app import portwatch
    from sessions_app import stats as live_stats

    for module, name in [
        (live_stats, "watch"),
        (live_stats, "unwatch"),
        (live_stats, "nodes_changed"),
        (portwatch, "join"),
        (portwatch, "leave"),
        (portwatch, "on_event"),
    ]:
        monkeypatch.setattr(module, name, lambda *args, **kwargs: None)


async def reap():
    """One pass, on a thread of its own as in the real (synchronous) command."""
    return await sync_to_async(Reaper(interval=1).run_once, thread_sensitive=False)()


def session_objects(engine, session_id: str) -> list[str]:
    objects = engine.list_objects()
    return [
        obj.get("Name") or obj.get("Id")
        for obj in objects.containers + objects.networks + objects.volumes
        if (obj.get("Labels") or {}).get("pwd.session") == session_id
    ]


async def listen(session_id: str) -> WebsocketCommunicator:
    viewer = WebsocketCommunicator(websocket_application, f"/ws/sessions/{session_id}/events/")
    assert (await viewer.connect())[0]
    return viewer


async def test_it_warns_then_ends_an_idle_session_and_leaves_nothing(engine, sessions, settings):
    session_id = (await sessions.create())["id"]
    assert (await add_node(sessions.client, session_id)).status_code == 201
    viewer = await listen(session_id)
    assert session_objects(engine, session_id)
    settings.PWD_IDLE_TIMEOUT = 10
    settings.PWD_EXPIRY_WARNING = 8
    await Session.objects.filter(pk=session_id).aupdate(last_activity_at=timezone.now())

    await asyncio.sleep(2.5)
    first = await reap()
    second = await reap()
    expiring = await viewer.receive_json_from(5)
    # Idle past the (tiny) limit, without waiting for it.
    await Session.objects.filter(pk=session_id).aupdate(
        last_activity_at=timezone.now() - timedelta(seconds=11)
    )
    ended = await reap()

    assert first.warned == [session_id]
    assert second.warned == []
    assert expiring["type"] == "session.expiring"
    assert 0 < expiring["seconds_left"] <= 8
    assert ended.ended == [session_id]
    assert ended.cleaned == [session_id]
    assert await viewer.receive_json_from(5) == {"type": "session.ended", "reason": "expired"}
    assert session_objects(engine, session_id) == []
    session = await Session.objects.aget(pk=session_id)
    assert session.ended_at is not None
    assert session.cleaned_at is not None


async def test_it_leaves_a_valid_session_alone(engine, sessions):
    session_id = (await sessions.create())["id"]
    node = (await add_node(sessions.client, session_id)).json()
    before = sorted(session_objects(engine, session_id))

    report = await reap()

    assert not report, report
    assert sorted(session_objects(engine, session_id)) == before
    assert (await Node.objects.aget(session_id=session_id, name="node1")).status == "running"
    assert (await sessions.client.get(f"/api/sessions/{session_id}/nodes/node1/")).json() == node


async def test_it_removes_labelled_objects_the_database_does_not_know(engine, monkeypatch):
    monkeypatch.setattr(reaper_module, "VOLUME_GRACE", timedelta(0))
    ghost = "ghost-session-that-is-not-in-the-database"
    network, _ = await engine.run(engine.create_session_network, ghost)
    node = await engine.run(engine.create_node, ghost, "node1", network, wait=False)
    volume = engine.client().volumes.create(labels=engine.labels(engine.ROLE_NODE, "x", "node2"))

    report = await reap()

    assert node.container_id in report.removed_containers
    assert network in report.removed_networks
    assert volume.name in report.removed_volumes
    # A swarm lets go of an overlay network a moment after removing it.
    for _ in range(100):
        if not session_objects(engine, ghost):
            break
        await asyncio.sleep(0.1)
    assert session_objects(engine, ghost) == []
    assert volume.name not in {v["Name"] for v in engine.list_objects().volumes}


async def test_a_node_removed_from_outside_is_marked_gone_and_viewers_are_told(engine, sessions):
    session_id = (await sessions.create())["id"]
    await add_node(sessions.client, session_id)
    node = await Node.objects.aget(session_id=session_id, name="node1")
    viewer = await listen(session_id)

    engine.client().api.remove_container(node.container_id, force=True)
    report = await reap()

    assert report.gone_nodes == [f"{session_id[:6]}/node1"]
    assert await viewer.receive_json_from(5) == {"type": "node.gone", "name": "node1"}
    gone = (await sessions.client.get(f"/api/sessions/{session_id}/nodes/node1/")).json()
    assert gone["status"] == "gone"
    assert not (await reap()).gone_nodes


def test_two_reapers_at_once_end_a_session_once_and_leave_nothing(engine, tmp_path):
    with live_server(tmp_path) as server:
        status, created = server.request("POST", "/api/sessions/")
        assert status == 201, created
        session_id = created["id"]
        status, node = server.request("POST", f"/api/sessions/{session_id}/nodes/")
        assert status == 201, node
        with sqlite3.connect(tmp_path / "db.sqlite3") as db:
            db.execute("UPDATE sessions_app_session SET last_activity_at = '2000-01-01 00:00:00'")

        reapers = [
            subprocess.Popen(
                [sys.executable, "manage.py", "reap", "--once"],
                env=server.env,
                cwd=ROOT,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        logs = [reaper.communicate(timeout=60)[1] for reaper in reapers]

        assert [reaper.returncode for reaper in reapers] == [0, 0], logs
        # Each pass logs what it did; exactly one of them ended (and announced) it.
        assert sum("ended 1" in log for log in logs) == 1, logs
        assert not [log for log in logs if "failed" in log], logs
        assert server.objects().names(session_id) == []
        status, error = server.request("GET", f"/api/sessions/{session_id}/")
        assert status == 404


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (SigCgt in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signum - 1)))


def test_the_command_runs_a_pass_and_stops_on_sigterm(engine, tmp_path):
    with live_server(tmp_path) as server:
        once = server.manage("reap", "--once")
        assert once.returncode == 0, once.stderr
        process = subprocess.Popen(
            [sys.executable, "manage.py", "reap", "--interval", "30"],
            env=server.env,
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Signal only once the command catches SIGTERM (its handler is installed once
        # Django is set up, which takes a while on a busy machine).
        for _ in range(300):
            if _catches(process.pid, signal.SIGTERM) or process.poll() is not None:
                break
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert process.wait(timeout=10) == 0, process.stderr.read()
        assert time.monotonic() - started < 5


async def test_a_lifetime_warning_is_given_once_even_while_the_trainee_is_active(settings):
    settings.PWD_SESSION_LIFETIME = 100
    settings.PWD_EXPIRY_WARNING = 60
    now = timezone.now()
    session = await Session.objects.acreate(
        created_at=now - timedelta(seconds=50), last_activity_at=now - timedelta(seconds=5)
    )

    def warn() -> list[str]:
        report = reaper_module.PassReport()
        Reaper().warn_expiring(report, timezone.now())
        return report.warned

    first = await sync_to_async(warn)()
    await sync_to_async(session.touch)()
    second = await sync_to_async(warn)()

    assert first == [session.id]
    assert second == []
