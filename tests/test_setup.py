"""Swarm setups against the real engine: templates and plans become running nodes in a
swarm that `docker node ls` shows as planned, announced as events; a setup that cannot
be done is refused or undone and leaves nothing behind."""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from sessions_app import setup
from sessions_app.models import Node
from tests.api_helpers import add_node, error_of, post, run
from tests.test_events import listen

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

NODE_LS = "docker node ls --format '{{.Hostname}} {{.Status}} {{.ManagerStatus}}'"


async def set_up(client, session_id: str, body: dict):
    return await post(client, f"/api/sessions/{session_id}/setup/", body)


async def heard(viewer, until: str, most: int = 200) -> list[dict]:
    """The session's events up to and including the first of type ``until``."""
    seen = []
    for _ in range(most):
        event = await viewer.receive_json_from(30)
        seen.append(event)
        if event["type"] == until:
            return seen
    raise AssertionError(f"no {until} in {seen}")


def swarm_of(listing: str) -> dict[str, tuple[str, str]]:
    """hostname -> (status, manager status) from NODE_LS's output."""
    rows = [[*line.split(), ""][:3] for line in listing.strip().splitlines()]
    return {hostname: (status, manager) for hostname, status, manager in rows}


def session_containers(engine, session_id: str) -> list[dict]:
    return [
        c
        for c in engine.list_objects().containers
        if c["Labels"].get(engine.LABEL_SESSION) == session_id
    ]


async def test_3_managers_2_workers_forms_a_5_node_swarm_with_3_managers_from_pool_and_cold(
    sessions, engine, keeper, settings
):
    # Two warm nodes (one of them attached ahead as node1), the other three cold.
    settings.PWD_POOL_SIZE = keeper.size = 2
    assert await sync_to_async(keeper.run_once)() == 2
    session_id = (await sessions.create())["id"]
    viewer = await listen(session_id)

    response = await set_up(sessions.client, session_id, {"template": "3-managers-2-workers"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == session_id
    assert [n["name"] for n in body["nodes"]] == ["node1", "node2", "node3", "node4", "node5"]
    assert {n["status"] for n in body["nodes"]} == {"running"}
    listing = (await run(sessions.client, session_id, "node1", NODE_LS))["output"]
    swarm = swarm_of(listing)
    assert set(swarm) == {"node1", "node2", "node3", "node4", "node5"}, listing
    assert {status for status, _ in swarm.values()} == {"Ready"}, listing
    managers = {name for name, (_, manager) in swarm.items() if manager}
    assert managers == {"node1", "node2", "node3"}, listing
    assert swarm["node1"][1] == "Leader", listing
    # Pool containers keep their labels (no pwd.session): found through the node rows.
    ids = {n.container_id async for n in Node.objects.filter(session_id=session_id)}
    containers = [c for c in engine.list_objects().containers if c["Id"] in ids]
    roles = sorted(c["Labels"][engine.LABEL_ROLE] for c in containers)
    assert roles == [engine.ROLE_NODE] * 3 + [engine.ROLE_POOL] * 2

    events = await heard(viewer, "setup.done")
    progress = [e for e in events if e["type"] == "setup.progress"]
    assert [e["done"] for e in progress if e["step"] == "nodes"] == [0, 1, 2, 3, 4, 5]
    assert [e["done"] for e in progress if e["step"] == "swarm"] == [0, 1, 2, 3, 4, 5]
    assert progress[-1] == {
        "type": "setup.progress",
        "step": "ready",
        "done": 5,
        "of": 5,
        "node": None,
    }
    assert sorted(e["node"]["name"] for e in events if e["type"] == "node.added") == [
        f"node{i}" for i in range(1, 6)
    ]
    assert events[-1]["nodes"] == [
        {"name": "node1", "role": "manager"},
        {"name": "node2", "role": "manager"},
        {"name": "node3", "role": "manager"},
        {"name": "node4", "role": "worker"},
        {"name": "node5", "role": "worker"},
    ]
    await viewer.disconnect()


async def test_a_plan_runs_each_nodes_commands_in_order_once_the_swarm_is_formed(sessions):
    session_id = (await sessions.create())["id"]
    plan = {
        "nodes": [
            {
                "role": "manager",
                # An overlay network can only be made once this node manages a swarm.
                "run": [
                    ["docker", "network", "create", "-d", "overlay", "planned"],
                    ["sh", "-c", "echo first > /tmp/order"],
                    ["sh", "-c", "echo second >> /tmp/order"],
                ],
            },
            {"role": "none", "run": [["touch", "/tmp/ran"]]},
        ]
    }

    response = await set_up(sessions.client, session_id, plan)

    assert response.status_code == 200, response.content
    client = sessions.client
    networks = await run(client, session_id, "node1", "docker network ls --format '{{.Name}}'")
    assert "planned" in networks["output"].split()
    assert (await run(client, session_id, "node1", "cat /tmp/order"))["output"] == "first\nsecond\n"
    assert (await run(client, session_id, "node2", "ls /tmp/ran"))["exit_code"] == 0
    swarm_state = "docker info --format '{{.Swarm.LocalNodeState}}'"
    state = await run(client, session_id, "node2", swarm_state)
    assert state["output"].strip() == "inactive"
    assert (await run(client, session_id, "node1", NODE_LS))["output"].count("Ready") == 1


async def test_a_failing_command_undoes_the_setup_and_names_the_node_and_command(sessions, engine):
    session_id = (await sessions.create())["id"]
    viewer = await listen(session_id)
    plan = {"nodes": [{"role": "manager"}, {"role": "none", "run": [["sh", "-c", "exit 3"]]}]}

    response = await set_up(sessions.client, session_id, plan)

    assert response.status_code == 409, response.content
    error = error_of(response)
    assert error["code"] == "command_failed"
    assert "node2" in error["message"]
    assert "sh -c 'exit 3'" in error["message"]
    assert "exited with 3" in error["message"]
    assert await Node.objects.filter(session_id=session_id).acount() == 0
    assert session_containers(engine, session_id) == []
    events = await heard(viewer, "setup.failed")
    assert events[-1]["error"] == error
    assert sorted(e["name"] for e in events if e["type"] == "node.removed") == ["node1", "node2"]
    # The claim is released: the session takes a setup again.
    again = await set_up(sessions.client, session_id, {"nodes": [{"role": "none"}]})
    assert again.status_code == 200, again.content
    await viewer.disconnect()


async def test_a_template_on_a_session_with_nodes_is_refused_and_its_node_goes_on(sessions):
    session_id = (await sessions.create())["id"]
    assert (await add_node(sessions.client, session_id)).status_code == 201

    response = await set_up(sessions.client, session_id, {"template": "1-manager-1-worker"})

    assert response.status_code == 409, response.content
    assert error_of(response)["code"] == "session_not_empty"
    nodes = [n async for n in Node.objects.filter(session_id=session_id)]
    assert [(n.name, n.status) for n in nodes] == [("node1", "running")]
    assert (await run(sessions.client, session_id, "node1", "echo alive"))["output"] == "alive\n"


async def test_two_setups_at_once_on_one_session_make_one_set_of_nodes(sessions):
    session_id = (await sessions.create())["id"]
    plan = {"nodes": [{"role": "none"}]}

    first, second = await asyncio.gather(
        set_up(sessions.client, session_id, plan), set_up(sessions.client, session_id, plan)
    )

    statuses = sorted([first.status_code, second.status_code])
    assert statuses == [200, 409], (first.content, second.content)
    refused = first if first.status_code == 409 else second
    assert error_of(refused)["code"] in {"setup_in_progress", "session_not_empty"}
    assert await Node.objects.filter(session_id=session_id).acount() == 1


async def test_a_quota_reached_part_way_removes_the_nodes_already_made(sessions, engine, settings):
    session_id = (await sessions.create())["id"]
    settings.PWD_MAX_TOTAL_NODES = await Node.objects.exclude(status="gone").acount() + 1

    response = await set_up(sessions.client, session_id, {"template": "1-manager-1-worker"})

    assert response.status_code == 429, response.content
    assert error_of(response)["code"] == "at_capacity"
    assert await Node.objects.filter(session_id=session_id).acount() == 0
    assert session_containers(engine, session_id) == []


async def test_a_template_larger_than_the_session_is_refused_before_any_node_starts(
    sessions, settings
):
    settings.PWD_MAX_NODES = 2
    session_id = (await sessions.create())["id"]

    response = await set_up(sessions.client, session_id, {"template": "3-managers-2-workers"})

    assert response.status_code == 409, response.content
    error = error_of(response)
    assert error["code"] == "node_limit_reached"
    assert "may have 2" in error["message"]
    assert await Node.objects.filter(session_id=session_id).acount() == 0


def test_readiness_needs_every_node_ready_in_its_planned_role():
    wanted = {"node1": True, "node2": True, "node3": False}
    listing = "node1 Ready Leader\nnode2 Ready Reachable\nnode3 Ready \n"

    assert setup.ready_as_planned(listing, wanted) == {"node1", "node2", "node3"}
    assert setup.ready_as_planned("node1 Ready Leader\nnode2 Down Reachable\n", wanted) == {"node1"}
    # A worker promoted, or a manager that joined as a worker, is not as planned.
    assert setup.ready_as_planned("node2 Ready \nnode3 Ready Reachable\n", wanted) == set()
