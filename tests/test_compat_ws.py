"""Play with Docker compatibility over its session websocket, on a live server with real
nodes: the SDK's messages in, PWD's frames out (docs/compat.md)."""

from __future__ import annotations

import json

import pytest
import websockets.sync.client
from websockets.exceptions import InvalidStatus

from tests.compat_helpers import PwdSocket, Sdk, compat_server

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    with compat_server(tmp_path_factory.mktemp("compat-ws")) as live:
        yield live


@pytest.fixture(scope="module")
def sdk(server) -> Sdk:
    return Sdk(server.url)


@pytest.fixture(scope="module")
def opened(server, sdk):
    """As the SDK does it: the session, its socket open, then the instance."""
    session_id = sdk.new_session()["session_id"]
    socket = PwdSocket(server.url, session_id)
    made = sdk.new_instance(session_id)
    yield session_id, socket, made
    socket.close()
    sdk.close(session_id)


@pytest.fixture
def fresh(server, sdk):
    """A session of the test's own with node1 attached on an open PWD socket."""
    session_id = sdk.new_session()["session_id"]
    socket = PwdSocket(server.url, session_id)
    sdk.new_instance(session_id)
    socket.until(lambda s: ["node1", "connect"] in s.named("instance terminal status"))
    yield session_id, socket
    socket.close()
    sdk.close(session_id)


def test_an_instance_made_after_the_socket_opened_is_announced_and_attached(opened):
    _, socket, made = opened
    socket.until(lambda s: s.named("instance new"))
    name, ip, hostname, proxy_host = socket.named("instance new")[0]
    assert (name, ip, hostname, proxy_host) == ("node1", made["ip"], "node1", made["proxy_host"])
    socket.until(lambda s: ["node1", "connect"] in s.named("instance terminal status"))
    socket.send("instance terminal in", ["node1", "echo compat-$((6*7))\r"])
    socket.until_output("node1", "compat-42")
    for args in socket.named("instance terminal out"):
        assert isinstance(args[1], str)
        assert len(args[1].encode()) <= 1024


def test_a_socket_opened_later_gets_the_status_and_recent_output_once(server, opened):
    session_id, socket, _ = opened
    socket.send("instance terminal in", ["node1", "echo before-$((2*3))-reconnect\r"])
    socket.until_output("node1", "before-6-reconnect")
    again = PwdSocket(server.url, session_id)
    try:
        again.until(lambda s: "before-6-reconnect" in s.output("node1"))
        assert again.messages[0] == {
            "name": "instance terminal status",
            "args": ["node1", "connect"],
        }
        again.send("instance terminal in", ["node1", "echo after-$((3*3))\r"])
        again.until_output("node1", "after-9")
        assert again.output("node1").count("before-6-reconnect") == 1
        assert again.named("instance terminal status") == [["node1", "connect"]]
    finally:
        again.close()


@pytest.mark.parametrize(
    "frame",
    [
        '{"name": "instance terminal in", "args": [1, 2]}',
        '{"name": "instance terminal in", "args": ["node1", {"x": 1}]}',
        '{"name": "instance terminal in", "args": "node1"}',
        '{"name": "instance terminal in"}',
        '{"name": "instance viewport resize", "args": ["80", null]}',
        '{"name": 7, "args": []}',
        '["instance terminal in"]',
        "not json",
        "[" * 5000,
    ],
)
def test_malformed_frames_are_ignored_and_the_socket_keeps_working(opened, frame):
    _, socket, _ = opened
    socket.ws.send(frame)
    socket.ws.send(b"\x00binary")
    marker = f"still-{abs(hash(frame)) % 1000}"
    socket.send("instance terminal in", ["node1", f"echo {marker}-ok\r"])
    socket.until_output("node1", f"{marker}-ok")
    assert not socket.closed


def test_a_viewport_resize_resizes_the_tty_and_is_broadcast(opened):
    _, socket, _ = opened
    socket.send("instance viewport resize", [100, 30])
    socket.until(lambda s: [100, 30] in s.named("instance viewport resize"))
    socket.send("instance terminal in", ["node1", "echo size-$(stty size | tr ' ' x)\r"])
    socket.until_output("node1", "size-30x100")


def test_bad_utf8_from_the_node_becomes_replacement_characters(opened):
    _, socket, _ = opened
    socket.send("instance terminal in", ["node1", "printf 'bad-\\377\\376-end\\n'\r"])
    socket.until_output("node1", "bad-\ufffd\ufffd-end")


def test_an_unknown_session_upgrades_and_hears_nothing(server):
    socket = PwdSocket(server.url, "nosuchsession")
    try:
        socket.ws.ping().wait(10)
        socket.send("instance terminal in", ["node1", "ls\r"])
        socket.ws.ping().wait(10)
        assert socket.messages == []
    finally:
        socket.close()


def test_a_foreign_origin_cannot_open_the_socket(server, opened):
    session_id, _, _ = opened
    url = server.url.replace("http", "ws", 1) + f"/sessions/{session_id}/ws/"
    with pytest.raises(InvalidStatus) as refused:
        websockets.sync.client.connect(url, additional_headers={"Origin": "http://evil.test"})
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("how", ["session close", "DELETE"])
def test_a_close_deletes_each_instance_then_ends_the_session(server, sdk, fresh, how):
    session_id, socket = fresh
    if how == "DELETE":
        assert sdk.close(session_id).status == 200
    else:
        socket.send("session close", [])
    socket.until(lambda s: s.named("session end"))
    names = [m["name"] for m in socket.messages]
    assert names.index("instance delete") < names.index("session end")
    assert socket.named("instance delete") == [["node1"]]
    assert json.dumps(socket.messages[-1]) == '{"name": "session end", "args": []}'
    socket.until(lambda s: s.closed)
    assert sdk.call("GET", f"/sessions/{session_id}").status == 404


def test_a_node_removed_from_outside_is_an_instance_delete_and_exec_answers_410(
    server, sdk, engine, fresh
):
    session_id, socket = fresh
    found = server.python(
        "from sessions_app.models import Node\n"
        f"print(Node.objects.get(session_id={session_id!r}, name='node1').container_id)"
    )
    engine.remove_node(found.stdout.strip().splitlines()[-1])
    reply = sdk.json("POST", f"/sessions/{session_id}/instances/node1/exec", {"command": ["true"]})
    assert reply.status == 410
    assert reply.code == "node_gone"
    socket.until(lambda s: s.named("instance delete"))
    assert socket.named("instance delete") == [["node1"]]
    assert not socket.closed


def test_a_session_ended_by_another_process_ends_the_socket(server, sdk, fresh):
    session_id, socket = fresh
    ended = server.python(
        "from django.utils import timezone\n"
        "from sessions_app.models import Session\n"
        f"Session.objects.filter(pk={session_id!r}).update(ended_at=timezone.now())"
    )
    assert ended.returncode == 0, ended.stderr
    socket.until(lambda s: s.named("session end"), within=90)
    assert socket.named("instance delete") == [["node1"]]
