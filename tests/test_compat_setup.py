"""Play with Docker's setup (a swarm plan) onto the native swarm setup, on real nodes."""

from __future__ import annotations

import pytest

from tests.compat_helpers import XHR, PwdSocket, Sdk, compat_server

pytestmark = pytest.mark.docker

PLAN = {
    "instances": [
        {
            "hostname": "manager1",
            "is_swarm_manager": True,
            "run": [["sh", "-c", "echo ran > /tmp/ran"]],
        },
        {"hostname": "worker1", "is_swarm_worker": True},
    ]
}


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    with compat_server(tmp_path_factory.mktemp("compat-setup")) as live:
        yield live


def test_a_setup_plan_forms_the_swarm_and_runs_its_commands(server):
    sdk = Sdk(server.url)
    session_id = sdk.new_session()["session_id"]
    socket = PwdSocket(server.url, session_id)
    try:
        reply = sdk.json("POST", f"/sessions/{session_id}/setup", PLAN, timeout=300)
        assert (reply.status, reply.body) == (200, b""), reply.body
        got = sdk.call("GET", f"/sessions/{session_id}", headers=XHR).json()
        assert sorted(got["instances"]) == ["node1", "node2"]
        ready = "test $(docker node ls --filter role=worker -q | wc -l) = 1"
        assert sdk.exec(session_id, "node1", ["sh", "-c", ready]) == 0
        assert sdk.exec(session_id, "node1", ["grep", "-qx", "ran", "/tmp/ran"]) == 0
        socket.until(lambda s: len(s.named("instance new")) == 2)
        again = sdk.json("POST", f"/sessions/{session_id}/setup", PLAN)
        assert again.status == 409
        assert again.body == b"Cannot setup a session that contains instances\n"
    finally:
        socket.close()
        sdk.close(session_id)


@pytest.mark.parametrize(
    "plan",
    [
        {},
        {"instances": []},
        {"instances": "node1"},
        {"instances": [{"is_swarm_manager": "yes"}]},
        {"instances": [{"is_swarm_manager": True, "is_swarm_worker": True}]},
        {"instances": [{"is_swarm_worker": True}]},
        {"instances": [{"run": "docker ps"}]},
        {"instances": [{"tls": True}]},
        {"instances": [{"type": "windows"}]},
    ],
)
def test_a_bad_plan_is_400_and_starts_nothing(server, plan):
    sdk = Sdk(server.url)
    session_id = sdk.new_session()["session_id"]
    try:
        reply = sdk.json("POST", f"/sessions/{session_id}/setup", plan)
        assert reply.status == 400, reply.body
        assert sdk.call("GET", f"/sessions/{session_id}", headers=XHR).json()["instances"] == {}
    finally:
        sdk.close(session_id)
