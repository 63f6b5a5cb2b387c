"""Nodes through the API: add (within the limit, also when racing), read, exec, remove."""

import asyncio
import ipaddress

import pytest

from sessions_app.models import Node, Session
from tests.api_helpers import add_node, error_of, post, run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def one_node(sessions):
    """A session with one running node: (client, session id)."""
    data = await sessions.create()
    response = await add_node(sessions.client, data["id"])
    assert response.status_code == 201, response.content
    return sessions.client, data["id"]


def node_containers(engine, session_id: str) -> list[dict]:
    return [
        c for c in engine.list_objects().containers if c["Labels"].get("pwd.session") == session_id
    ]


async def test_it_adds_a_running_node_on_the_session_network(engine, sessions):
    data = await sessions.create()

    response = await add_node(sessions.client, data["id"])

    assert response.status_code == 201, response.content
    node = response.json()
    assert set(node) == {"name", "hostname", "ip", "status", "created_at", "ports", "terminal"}
    assert node["name"] == node["hostname"] == "node1"
    assert node["status"] == "running"
    assert node["ports"] == []
    assert node["terminal"] == f"/ws/sessions/{data['id']}/nodes/node1/terminal/"
    session = await Session.objects.aget(pk=data["id"])
    subnet = engine.client().api.inspect_network(session.network_id)["IPAM"]["Config"][0]
    assert ipaddress.ip_address(node["ip"]) in ipaddress.ip_network(subnet["Subnet"])
    # It answered only once the node's own engine did.
    result = await run(sessions.client, data["id"], "node1", "docker version -f '{{.Server.Os}}'")
    assert result == {"exit_code": 0, "output": "linux\n", "truncated": False, "timed_out": False}
    listed = await sessions.client.get(f"/api/sessions/{data['id']}/")
    assert listed.json()["nodes"] == [node]
    assert (await sessions.client.get(f"/api/sessions/{data['id']}/nodes/node1/")).json() == node


async def test_it_stops_at_the_limit_and_one_of_two_racing_adds_wins_the_last_slot(
    engine, sessions
):
    data = await sessions.create()
    first = await asyncio.gather(*(add_node(sessions.client, data["id"]) for _ in range(4)))
    assert sorted(r.status_code for r in first) == [201] * 4

    racing = await asyncio.gather(*(add_node(sessions.client, data["id"]) for _ in range(2)))

    assert sorted(r.status_code for r in racing) == [201, 409], [r.content for r in racing]
    loser = next(r for r in racing if r.status_code == 409)
    assert error_of(loser)["code"] == "node_limit_reached"
    sixth = await add_node(sessions.client, data["id"])
    assert sixth.status_code == 409
    assert error_of(sixth)["code"] == "node_limit_reached"
    names = [n async for n in Node.objects.filter(session_id=data["id"])]
    assert {n.name for n in names} == {f"node{i}" for i in range(1, 6)}
    assert all(n.status == "running" for n in names)
    assert len(node_containers(engine, data["id"])) == 5


async def test_a_removed_node_frees_the_lowest_name(engine, one_node):
    client, session_id = one_node
    assert (await add_node(client, session_id)).json()["name"] == "node2"

    response = await client.delete(f"/api/sessions/{session_id}/nodes/node1/")

    assert response.status_code == 204
    assert [c["Labels"]["pwd.node"] for c in node_containers(engine, session_id)] == ["node2"]
    gone = await client.get(f"/api/sessions/{session_id}/nodes/node1/")
    assert gone.status_code == 404
    assert error_of(gone)["code"] == "node_not_found"
    assert (await add_node(client, session_id)).json()["name"] == "node1"


async def test_exec_returns_output_and_exit_code(one_node):
    client, session_id = one_node

    ok = await run(client, session_id, "node1", "echo out; echo err >&2; hostname")
    failed = await run(client, session_id, "node1", "exit 3")

    assert ok["exit_code"] == 0
    assert ok["output"] == "out\nerr\nnode1\n"
    assert failed["exit_code"] == 3
    assert failed["timed_out"] is False


async def test_exec_ends_a_command_that_runs_past_its_timeout(one_node):
    client, session_id = one_node

    result = await run(client, session_id, "node1", "echo started; sleep 30", seconds=1)

    assert result["timed_out"] is True
    assert result["exit_code"] is None
    assert result["output"] == "started\n"
    left = await run(client, session_id, "node1", "pgrep -x sleep || echo none")
    assert left["output"] == "none\n"


async def test_exec_output_is_capped(one_node, settings):
    settings.PWD_EXEC_MAX_OUTPUT = 1000
    client, session_id = one_node

    result = await run(client, session_id, "node1", "yes x | head -c 5000")

    assert result["truncated"] is True
    assert len(result["output"]) == 1000


MALFORMED_EXEC_BODIES = [
    {},
    {"command": []},
    {"command": "ls"},
    {"command": ["ls", 1]},
    {"command": ["ls"], "timeout": 0},
    {"command": ["ls"], "timeout": -1},
    {"command": ["ls"], "timeout": 601},
    {"command": ["ls"], "timeout": "5"},
    {"command": ["ls"], "timeout": True},
    [],
]


async def test_exec_rejects_a_malformed_request(sessions):
    data = await sessions.create()

    for body in MALFORMED_EXEC_BODIES:
        response = await post(
            sessions.client, f"/api/sessions/{data['id']}/nodes/node1/exec/", body
        )
        assert response.status_code == 400, body
        assert error_of(response)["code"] == "invalid_request", body


async def test_exec_on_an_unknown_node_is_not_found(one_node):
    client, session_id = one_node

    response = await post(
        client, f"/api/sessions/{session_id}/nodes/node7/exec/", {"command": ["true"]}
    )

    assert response.status_code == 404
    assert error_of(response)["code"] == "node_not_found"


async def test_a_disallowed_image_is_refused(engine, sessions):
    data = await sessions.create()

    for image in ["alpine", 42]:
        response = await add_node(sessions.client, data["id"], {"image": image})
        assert response.status_code == 400
        assert error_of(response)["code"] == "bad_image"
    assert not node_containers(engine, data["id"])


async def test_a_node_that_fails_to_start_leaves_nothing_behind(engine, sessions, settings):
    settings.PWD_NODE_IMAGES = [settings.PWD_NODE_IMAGE, "pwd-no-such-image:never"]
    data = await sessions.create()

    response = await add_node(sessions.client, data["id"], {"image": "pwd-no-such-image:never"})

    assert response.status_code in (500, 502)
    assert "pwd-no-such-image" in error_of(response)["message"]
    assert not await Node.objects.filter(session_id=data["id"]).aexists()
    assert not node_containers(engine, data["id"])
    assert not [v for v in engine.list_objects().volumes if v["Labels"].get("pwd.node")]
