"""The session network: nodes find each other by name, form a swarm, and cannot reach
the nodes of another session."""

import asyncio
import time

import pytest
from django.test import AsyncClient

from tests.api_helpers import add_node, run

pytestmark = pytest.mark.django_db(transaction=True)


async def add_nodes(client: AsyncClient, session_id: str, count: int) -> list[dict]:
    responses = await asyncio.gather(*(add_node(client, session_id) for _ in range(count)))
    assert [r.status_code for r in responses] == [201] * count, [r.content for r in responses]
    return sorted((r.json() for r in responses), key=lambda node: node["name"])


async def test_three_nodes_ping_each_other_by_name_and_form_a_swarm(sessions):
    client = sessions.client
    session_id = (await sessions.create())["id"]
    node1, node2, _ = await add_nodes(client, session_id, 3)

    ping = await run(client, session_id, "node1", "ping -c 1 -W 5 node2")
    assert ping["exit_code"] == 0, ping["output"]
    assert node2["ip"] in ping["output"]

    init = await run(
        client,
        session_id,
        "node1",
        "docker swarm init --advertise-addr $(ip -4 -o addr show eth0 | awk '{print $4}' "
        "| cut -d/ -f1) >/dev/null && docker swarm join-token -q worker",
        seconds=60,
    )
    assert init["exit_code"] == 0, init["output"]
    token = init["output"].strip().splitlines()[-1]
    join = await run(
        client, session_id, "node2", f"docker swarm join --token {token} {node1['ip']}:2377", 60
    )
    assert join["exit_code"] == 0, join["output"]

    deadline = time.monotonic() + 60
    while True:
        listed = await run(client, session_id, "node1", "docker node ls --format '{{.Status}}'")
        if listed["output"].split() == ["Ready", "Ready"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    assert listed["output"].split() == ["Ready", "Ready"], listed["output"]


async def test_a_node_cannot_reach_a_node_of_another_session(sessions):
    client = sessions.client
    first = (await sessions.create())["id"]
    second = (await sessions.create())["id"]
    (mine,), (theirs,) = await asyncio.gather(
        add_nodes(client, first, 1), add_nodes(client, second, 1)
    )
    assert mine["ip"] != theirs["ip"]

    # The other node serves a secret; this machine's network may answer any TCP
    # connection itself, so "connected" proves nothing, only the secret would.
    serve = await run(
        client,
        second,
        "node1",
        "mkdir -p /tmp/www && echo secret-of-the-other-session > /tmp/www/index.html && "
        "cd /tmp/www && (nohup python3 -m http.server 8080 >/dev/null 2>&1 &) && "
        "for i in $(seq 50); do curl -s http://127.0.0.1:8080/ && break; sleep 0.1; done",
    )
    assert "secret-of-the-other-session" in serve["output"], serve["output"]

    result = await run(
        client,
        first,
        "node1",
        f"ping -c 2 -W 2 {theirs['ip']} >/dev/null 2>&1 && echo ping-reached; "
        f"curl -s --max-time 3 http://{theirs['ip']}:8080/; "
        "getent hosts node1 | awk '{print $1}'; true",
    )

    assert "ping-reached" not in result["output"], result["output"]
    assert "secret-of-the-other-session" not in result["output"], result["output"]
    # By name a node finds only its own session's node1.
    assert result["output"].split()[-1] == mine["ip"], result["output"]
