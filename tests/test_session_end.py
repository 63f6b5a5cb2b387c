"""Ending a session and removing a node on a real server: they end at once for the API
and the events, and what the engine is slow to let go is removed later, never answered
with an error (docs/api.md, the DELETE semantics). Every wait is a bounded loop."""

import contextlib
import json
import time

import docker
import pytest
import websockets.sync.client

from tests.fault_helpers import restartable_server

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

HOLDER_IMAGE = "pwd-base:trixie"


def _created(server, path: str) -> dict:
    status, body = server.request("POST", path)
    assert status == 201, body
    return body


def _events(server, session_id: str):
    url = server.url.replace("http", "ws", 1) + f"/ws/sessions/{session_id}/events/"
    return websockets.sync.client.connect(url, open_timeout=15)


def _next_of(viewer, kind: str, within: float = 20.0) -> dict | None:
    """The next event of type ``kind`` (others skipped), or None after ``within`` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            event = json.loads(viewer.recv(timeout=max(0.1, deadline - time.monotonic())))
        except TimeoutError:
            return None
        if event.get("type") == kind:
            return event
    return None


def _until(predicate, within: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def _cleaned(server, session_id: str) -> bool:
    done = server.python(
        "from sessions_app.models import Session\n"
        f"print(Session.objects.filter(pk={session_id!r}, cleaned_at__isnull=False).exists())"
    )
    return done.stdout.strip() == "True"


@contextlib.contextmanager
def _holding(network: str):
    """A container of no pwd instance attached to ``network``: the engine cannot remove
    the network while it is there (as when a swarm keeps a removed node's attachment)."""
    client = docker.from_env()
    holder = client.containers.run(
        HOLDER_IMAGE, ["sleep", "600"], detach=True, network=network, auto_remove=False
    )
    try:
        yield holder
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            holder.remove(force=True)


def test_a_session_the_engine_is_slow_to_let_go_ends_at_once_and_is_removed_later(engine, tmp_path):
    with restartable_server(tmp_path, PWD_REMOVAL_WAIT="1s") as server:
        session = _created(server, "/api/sessions/")
        sid = session["id"]
        _created(server, f"/api/sessions/{sid}/nodes/")
        (network,) = [n["Name"] for n in server.objects().networks]
        with _holding(network) as holder, _events(server, sid) as viewer:
            time.sleep(0.5)  # the viewer's group membership is in place before the end
            deleted, body = server.request("DELETE", f"/api/sessions/{sid}/")
            ended = _next_of(viewer, "session.ended")
            after, error = server.request("GET", f"/api/sessions/{sid}/")
            again, _ = server.request("DELETE", f"/api/sessions/{sid}/")
            # Held: the removal cannot have finished, so it is still under way.
            held = [n["Name"] for n in server.objects().networks]
            cleaned_while_held = _cleaned(server, sid)
            holder.remove(force=True)
            gone = _until(lambda: not server.objects(), within=120)
        left = server.objects()
        cleaned = _until(lambda: _cleaned(server, sid), within=30)
        log = server.log.read_text()

    assert (deleted, body) == (204, None)
    assert ended == {"type": "session.ended", "reason": "deleted"}
    assert (after, error["error"]["code"]) == (404, "session_not_found")
    assert again == 404
    assert held == [network]
    assert not cleaned_while_held
    assert gone, left.names()
    assert cleaned
    assert "Traceback" not in log


def test_a_removed_node_is_gone_at_once_and_its_container_follows(engine, tmp_path):
    with restartable_server(tmp_path) as server:
        sid = _created(server, "/api/sessions/")["id"]
        node = _created(server, f"/api/sessions/{sid}/nodes/")
        with _events(server, sid) as viewer:
            time.sleep(0.5)
            removed, body = server.request("DELETE", f"/api/sessions/{sid}/nodes/node1/")
            event = _next_of(viewer, "node.removed")
        after, error = server.request("GET", f"/api/sessions/{sid}/nodes/node1/")
        gone = _until(lambda: not server.objects().containers, within=60)
        added = _created(server, f"/api/sessions/{sid}/nodes/")
        server.request("DELETE", f"/api/sessions/{sid}/")

    assert (removed, body) == (204, None)
    assert event == {"type": "node.removed", "name": "node1"}
    assert (after, error["error"]["code"]) == (404, "node_not_found")
    assert gone
    assert added["name"] == "node1"
    assert added["created_at"] != node["created_at"]


def test_a_node_container_left_by_a_web_process_that_died_is_removed_by_the_reaper(
    engine, tmp_path
):
    with restartable_server(tmp_path) as server:
        sid = _created(server, "/api/sessions/")["id"]
        _created(server, f"/api/sessions/{sid}/nodes/")
        # What a web process that died between the row and the container leaves.
        dropped = server.python(
            "from sessions_app.models import Node\n"
            f"print(Node.objects.filter(session_id={sid!r}).delete()[0])"
        )
        before = [c["Id"] for c in server.objects().containers]
        reaped = server.manage("reap", "--once")
        after = [c["Id"] for c in server.objects().containers]
        server.request("DELETE", f"/api/sessions/{sid}/")

    assert dropped.stdout.strip() == "1", dropped.stderr
    assert len(before) == 1
    assert reaped.returncode == 0, reaped.stderr
    assert "removed_containers 1" in reaped.stderr
    assert after == []
