"""Faults during a workshop (docs/reliability.md): the seat provisioner killed while it
makes seats, and the web process restarted while trainees work. No seat and no trainee's
session is lost; nothing is left on the engine. Every loop is bounded in count and time."""

import time

import httpx
import pytest

from tests.fault_helpers import WsTerminal, restartable_server

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"


def instructor_token(server) -> str:
    done = server.manage("instructor", "teacher", "--password", PASSWORD)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def seats(api: httpx.Client, workshop_id: str) -> list[dict]:
    response = api.get(f"/api/workshops/{workshop_id}/")
    assert response.status_code == 200, response.text
    return response.json()["seats"]


def until_seats(api: httpx.Client, workshop_id: str, predicate, within: float = 180) -> list[dict]:
    deadline = time.monotonic() + within
    while True:
        found = seats(api, workshop_id)
        if predicate(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"seats never settled: {found}")
        time.sleep(0.5)


def container_count(server) -> int:
    """Node containers (not the start-up probe's, which its own clean-up removes)."""
    return sum(c["Labels"].get("pwd.role") == "node" for c in server.objects().containers)


def test_the_provisioner_killed_mid_seat_leaves_no_seat_lost_and_nothing_behind(engine, tmp_path):
    with restartable_server(tmp_path, PWD_WORKSHOP_SEAT_TIMEOUT="8s") as server:
        token = instructor_token(server)
        api = httpx.Client(base_url=server.url, headers={"Authorization": f"Token {token}"})
        created = api.post("/api/workshops/", json={"title": "Faults", "seats": 2})
        assert created.status_code == 201, created.text
        workshop_id = created.json()["id"]

        first = server.spawn("workshops", ["manage.py", "workshops", "--parallelism", "1"])
        # Kill it once it has begun a seat (the seat's node is starting).
        deadline = time.monotonic() + 60
        while container_count(server) == 0:
            assert time.monotonic() < deadline, "the provisioner never started a node"
            time.sleep(0.1)
        first.kill()

        server.spawn("workshops", ["manage.py", "workshops", "--parallelism", "2"])
        final = until_seats(api, workshop_id, lambda s: all(x["status"] == "ready" for x in s))
        assert [len(s["nodes"]) for s in final] == [1, 1]
        # What the killed pass made was ended and removed: one node per seat, no more.
        deadline = time.monotonic() + 60
        while container_count(server) != 2:
            assert time.monotonic() < deadline, [
                (c["Names"], c["Labels"], c["State"]) for c in server.objects().containers
            ]
            time.sleep(0.5)
        assert api.delete(f"/api/workshops/{workshop_id}/").status_code == 204


def test_a_web_restart_during_a_workshop_keeps_every_seat_and_trainee(engine, tmp_path):
    with restartable_server(tmp_path) as server:
        token = instructor_token(server)
        api = httpx.Client(base_url=server.url, headers={"Authorization": f"Token {token}"})
        created = api.post("/api/workshops/", json={"title": "Restart", "seats": 2}).json()
        server.spawn("workshops", ["manage.py", "workshops"])
        until_seats(api, created["id"], lambda s: all(x["status"] == "ready" for x in s))

        trainee = httpx.Client(base_url=server.url)
        joined = trainee.post(f"/api/workshops/join/{created['join_code']}/", json={"name": "Ada"})
        assert joined.status_code == 201, joined.text
        session = joined.json()
        terminal = WsTerminal(server, session["nodes"][0]["terminal"])
        terminal.connected()
        terminal.type("echo before-$((6*7))\r")
        terminal.until_text("before-42\r\n")

        server.kill()
        terminal.until(lambda t: t.closed, within=10)
        server.start()

        again = trainee.post(f"/api/workshops/join/{created['join_code']}/", json={"name": "Ada"})
        assert again.status_code == 200, again.text
        assert again.json()["id"] == session["id"]
        roster = seats(api, created["id"])
        assert sorted(s["status"] for s in roster) == ["ready", "taken"]
        assert [s["trainee_name"] for s in roster if s["status"] == "taken"] == ["Ada"]
        back = WsTerminal(server, session["nodes"][0]["terminal"])
        back.connected()
        back.until_text("before-42")
        back.type("echo after-$((1+1))\r")
        back.until_text("after-2\r\n")
        back.close()
        assert api.delete(f"/api/workshops/{created['id']}/").status_code == 204
