"""Several web processes behind one address, sharing nothing but PostgreSQL and Redis
(issue 15): an event made through one reaches a viewer of the other, a terminal opened
on each shows the same shell, and a workshop made through one is joined through the
other. Real PostgreSQL, real Redis, two daphne processes, a real engine."""

import contextlib
import json
import time

import httpx
import pytest
import websockets.sync.client

from pwd_site.testing import Instance, LiveServer
from tests.fault_helpers import RedisServer, WsTerminal
from tests.postgres_helpers import postgres

pytestmark = [pytest.mark.docker, pytest.mark.redis]


@pytest.fixture
def two_web_processes(engine, tmp_path):
    redis = RedisServer(tmp_path)
    redis.start()
    with contextlib.ExitStack() as stack:
        stack.callback(redis.stop)
        database = stack.enter_context(postgres())
        from django.conf import settings

        instance = stack.enter_context(
            Instance(
                tmp_path / "instance",
                {"DATABASE_URL": database, "REDIS_URL": redis.url, "PWD_POOL_SIZE": "0"},
                prefix=settings.PWD_INSTANCE,
            )
        )
        first = stack.enter_context(LiveServer(instance))
        second = stack.enter_context(LiveServer(instance))
        yield first, second


def next_event(viewer, kind: str, within: float = 30) -> dict:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            event = json.loads(viewer.recv(timeout=1))
        except TimeoutError:
            continue
        if event.get("type") == kind:
            return event
    raise AssertionError(f"no {kind} within {within} s")


def test_an_event_and_a_terminal_work_whichever_process_serves_them(two_web_processes):
    first, second = two_web_processes
    assert first.env["DATABASE_URL"].startswith("postgres://")
    session = httpx.post(first.url + "/api/sessions/", json={}, timeout=60).json()
    viewer = websockets.sync.client.connect(
        second.ws_url + f"/ws/sessions/{session['id']}/events/", open_timeout=15
    )
    try:
        added = httpx.post(
            first.url + f"/api/sessions/{session['id']}/nodes/", json={}, timeout=120
        )
        assert added.status_code == 201, added.text
        heard = next_event(viewer, "node.added")
        assert heard["node"]["name"] == "node1"
        # The session as either process sees it.
        for server in (first, second):
            seen = httpx.get(server.url + f"/api/sessions/{session['id']}/", timeout=30).json()
            assert [n["name"] for n in seen["nodes"]] == ["node1"]

        on_first = WsTerminal(first, added.json()["terminal"])
        on_second = WsTerminal(second, added.json()["terminal"])
        on_first.connected()
        on_second.connected()
        on_first.type("echo from-first-$((6*7))\r")
        on_second.until_text("from-first-42\r\n")
        on_second.type("echo from-second-$((1+1))\r")
        on_first.until_text("from-second-2\r\n")
        on_first.close()
        on_second.close()

        ended = httpx.delete(second.url + f"/api/sessions/{session['id']}/", timeout=120)
        assert ended.status_code in (202, 204), ended.text
        assert next_event(viewer, "session.ended")["reason"] == "deleted"
        gone = httpx.get(first.url + f"/api/sessions/{session['id']}/", timeout=30)
        assert gone.status_code == 404
    finally:
        viewer.close()


def test_a_workshop_made_through_one_process_is_joined_through_the_other(two_web_processes):
    first, second = two_web_processes
    made = first.manage("instructor", "teacher", "--password", "not-a-secret-123")
    assert made.returncode == 0, made.stderr
    api = httpx.Client(
        base_url=first.url, headers={"Authorization": f"Token {made.stdout.strip()}"}, timeout=60
    )
    workshop = api.post("/api/workshops/", json={"title": "Two processes", "seats": 1}).json()
    provisioner = first.spawn("workshops", ["manage.py", "workshops"])
    deadline = time.monotonic() + 180
    while api.get(f"/api/workshops/{workshop['id']}/").json()["seats"][0]["status"] != "ready":
        assert time.monotonic() < deadline, provisioner.tail()
        time.sleep(0.5)
    trainee = httpx.Client(base_url=second.url, timeout=60)
    joined = trainee.post(f"/api/workshops/join/{workshop['join_code']}/", json={"name": "Ada"})
    assert joined.status_code == 201, joined.text
    again = trainee.post(f"/api/workshops/join/{workshop['join_code']}/", json={"name": "Ada"})
    assert again.json()["id"] == joined.json()["id"]
    roster = httpx.get(
        second.url + f"/api/workshops/{workshop['id']}/",
        headers=api.headers,
        timeout=30,
    ).json()
    assert roster["seats"][0]["trainee_name"] == "Ada"
    assert api.delete(f"/api/workshops/{workshop['id']}/").status_code == 204
