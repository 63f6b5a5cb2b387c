"""Faults: what happens when a part of pwd dies or a trainee abuses a node, and that no
valid session is lost. Every loop here is bounded in count and time; everything started
is stopped in a finally. docs/reliability.md lists each fault with its expected outcome.
"""

import concurrent.futures
import json
import time
import urllib.request

import pytest
import websockets.sync.client
from websockets.exceptions import ConnectionClosed

from tests.fault_helpers import RedisServer, WsTerminal, restartable_server

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def _created(server, path: str) -> dict:
    status, body = server.request("POST", path)
    assert status == 201, body
    return body


def test_killing_the_web_process_mid_session_keeps_the_shell_and_its_history(engine, tmp_path):
    with restartable_server(tmp_path) as server:
        session = _created(server, "/api/sessions/")
        node = _created(server, f"/api/sessions/{session['id']}/nodes/")
        terminal = WsTerminal(server, node["terminal"])
        terminal.connected()
        terminal.type("echo marker-$((6*7))\r")
        terminal.until_text("marker-42\r\n")

        server.kill()
        terminal.until(lambda t: t.closed, within=10)
        server.start()

        again = WsTerminal(server, node["terminal"])
        again.connected()
        again.until_text("marker-42")
        # The command before this line, from the shell's own history.
        again.type("fc -ln -2 -2 | sed 's/^[[:space:]]*/hist:/'; echo after-$((1+1))\r")
        again.until_text("after-2\r\n")
        status, body = server.request("GET", f"/api/sessions/{session['id']}/")
        again.close()
        server.request("DELETE", f"/api/sessions/{session['id']}/")

    assert "hist:echo marker-$((6*7))" in again.text
    assert status == 200
    assert [n["status"] for n in body["nodes"]] == ["running"]


def _events(server, session_id: str):
    url = server.url.replace("http", "ws", 1) + f"/ws/sessions/{session_id}/events/"
    return websockets.sync.client.connect(url, open_timeout=10)


def _next_event(viewer, within: float = 10) -> dict | None:
    """The next event, or None when the server closed the socket."""
    try:
        return json.loads(viewer.recv(timeout=within))
    except ConnectionClosed:
        return None


def test_redis_going_away_gives_clear_errors_and_everything_recovers_when_it_returns(
    engine, tmp_path
):
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        with restartable_server(tmp_path, REDIS_URL=redis.url) as server:
            first = _created(server, "/api/sessions/")
            second = _created(server, "/api/sessions/")

            redis.stop()
            health, _ = server.request("GET", "/healthz")
            during = _created(server, "/api/sessions/")  # sessions do not need Redis
            deleted, _ = server.request("DELETE", f"/api/sessions/{first['id']}/")
            with _events(server, second["id"]) as viewer:
                refused = _next_event(viewer)
                assert _next_event(viewer) is None
                close_code = viewer.close_code

            redis.start()
            with _events(server, second["id"]) as viewer:
                time.sleep(0.5)  # the group membership is in Redis before the delete
                server.request("DELETE", f"/api/sessions/{second['id']}/")
                ended = _next_event(viewer)
            server.request("DELETE", f"/api/sessions/{during['id']}/")
            log = server.log.read_text()
    finally:
        redis.stop()

    assert health == 200
    assert deleted == 204
    assert refused == {
        "type": "error",
        "error": {
            "code": "events_unavailable",
            "message": "Live updates are unavailable for a moment; reconnect shortly.",
        },
    }
    assert close_code == 4503
    assert ended == {"type": "session.ended", "reason": "deleted"}
    assert "Traceback" not in log


def _exec(server, session_id: str, node: str, script: str, seconds: float = 30):
    return server.request(
        "POST",
        f"/api/sessions/{session_id}/nodes/{node}/exec/",
        {"command": ["bash", "-c", script], "timeout": seconds},
    )


def _healthz_seconds(server) -> float:
    started = time.monotonic()
    urllib.request.urlopen(server.url + "/healthz", timeout=10).close()
    return time.monotonic() - started


@pytest.mark.parametrize(
    ("abuse", "script"),
    [
        ("fork bomb", "bomb() { bomb | bomb & }; bomb; sleep 30"),
        ("memory hog", "python3 -c \"x = b'x' * (3 * 1024**3); import time; time.sleep(30)\""),
    ],
)
def test_abuse_inside_a_node_hurts_only_that_node(engine, tmp_path, abuse, script):
    with restartable_server(tmp_path) as server:
        victim = _created(server, "/api/sessions/")
        bystander = _created(server, "/api/sessions/")
        for session in (victim, bystander):
            _created(server, f"/api/sessions/{session['id']}/nodes/")

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            abusing = pool.submit(_exec, server, victim["id"], "node1", script, 12)
            time.sleep(4)  # well into the abuse
            latencies = [_healthz_seconds(server) for _ in range(5)]
            started = time.monotonic()
            status, other = _exec(server, bystander["id"], "node1", "echo fine", 20)
            bystander_seconds = time.monotonic() - started
            abused_status, abused = abusing.result(timeout=60)

        # The victim node itself is still there and comes back once the abuse has ended.
        deadline, alive = time.monotonic() + 30, None
        while time.monotonic() < deadline:
            _, alive = _exec(server, victim["id"], "node1", "echo alive", 10)
            if alive and alive.get("output") == "alive\n":
                break
            time.sleep(1)
        _, listing = server.request("GET", f"/api/sessions/{victim['id']}/")
        for session in (victim, bystander):
            server.request("DELETE", f"/api/sessions/{session['id']}/")

    assert abused_status == 200, abused
    assert max(latencies) < 2.0, latencies
    assert status == 200
    assert other["output"] == "fine\n"
    assert bystander_seconds < 10
    assert alive["output"] == "alive\n", alive
    assert [n["status"] for n in listing["nodes"]] == ["running"]
