"""Faults: what happens when a part of pwd dies or a trainee abuses a node, and that no
valid session is lost. Every loop here is bounded in count and time; everything started
is stopped in a finally. docs/reliability.md lists each fault with its expected outcome.
"""

import concurrent.futures
import contextlib
import http.client
import json
import subprocess
import time
import urllib.parse
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


@pytest.fixture(scope="module")
def abused(engine, tmp_path_factory):
    """One server, a victim session and a bystander session with a node each."""
    with restartable_server(tmp_path_factory.mktemp("abuse")) as server:
        victim = _created(server, "/api/sessions/")
        bystander = _created(server, "/api/sessions/")
        for session in (victim, bystander):
            _created(server, f"/api/sessions/{session['id']}/nodes/")
        yield server, victim["id"], bystander["id"]
        for session_id in (victim["id"], bystander["id"]):
            server.request("DELETE", f"/api/sessions/{session_id}/")


def _others_stay_responsive(server, bystander: str) -> None:
    latencies = [_healthz_seconds(server) for _ in range(5)]
    started = time.monotonic()
    status, other = _exec(server, bystander, "node1", "echo fine", 20)
    assert max(latencies) < 2.0, latencies
    assert (status, other["output"]) == (200, "fine\n"), other
    assert time.monotonic() - started < 10


def _alive(server, victim: str, within: float = 30) -> dict:
    deadline, result = time.monotonic() + within, {}
    while time.monotonic() < deadline:
        _, result = _exec(server, victim, "node1", "echo alive", 10)
        if result and result.get("output") == "alive\n":
            break
        time.sleep(1)
    return result


def test_a_memory_hog_is_killed_inside_its_node_and_nothing_else_suffers(abused):
    server, victim, bystander = abused
    hog = "python3 -c \"x = b'x' * (3 * 1024**3); import time; time.sleep(30)\""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        hogging = pool.submit(_exec, server, victim, "node1", hog, 20)
        time.sleep(1)
        _others_stay_responsive(server, bystander)
        status, result = hogging.result(timeout=60)

    assert status == 200
    assert result["exit_code"] == 137  # SIGKILL from the OOM killer, well before 20 s
    assert _alive(server, victim)["output"] == "alive\n"


def test_a_fork_bomb_stops_at_the_pids_limit_and_nothing_else_suffers(abused, engine, settings):
    server, victim, bystander = abused
    # Detached, so the exec returns at once; the bomb runs on until the test ends it.
    bomb = "setsid bash -c 'b() { b | b & }; b' </dev/null >/dev/null 2>&1 & sleep 0.5"
    status, _ = _exec(server, victim, "node1", bomb, 10)
    assert status == 200
    container = engine.client().containers.get(_container_of(server, victim))
    try:
        time.sleep(3)
        pids = container.stats(stream=False)["pids_stats"]["current"]
        _others_stay_responsive(server, bystander)
    finally:
        _end_bomb(container)

    assert pids <= settings.PWD_NODE_PIDS
    assert pids > settings.PWD_NODE_PIDS / 2  # it really was a bomb
    assert _alive(server, victim)["output"] == "alive\n"
    _, listing = server.request("GET", f"/api/sessions/{victim}/")
    assert [n["status"] for n in listing["nodes"]] == ["running"]


def _container_of(server, session_id: str) -> str:
    code = (
        "from sessions_app.models import Node\n"
        f"print(Node.objects.get(session_id={session_id!r}, name='node1').container_id)"
    )
    return server.python(code).stdout.strip()


def _end_bomb(container) -> None:
    """Freeze the node, SIGKILL every bomb process (they die on thaw, before forking)."""
    container.pause()
    try:
        for _ in range(3):
            top = container.top(ps_args="-eo pid,args")
            victims = [row[0] for row in top["Processes"] if "b() { b | b & }" in row[-1]]
            if not victims:
                break
            subprocess.run(["kill", "-9", *victims], check=False, timeout=30)
    finally:
        container.unpause()


def test_a_node_removed_from_outside_is_shown_gone_to_its_terminal_and_the_api(engine, tmp_path):
    with restartable_server(tmp_path) as server:
        session = _created(server, "/api/sessions/")
        node = _created(server, f"/api/sessions/{session['id']}/nodes/")
        terminal = WsTerminal(server, node["terminal"])
        terminal.connected()

        engine.client().api.remove_container(_container_of(server, session["id"]), force=True)
        terminal.until(lambda t: t.closed, within=20)
        reaped = server.manage("reap", "--once")
        _, after = server.request("GET", f"/api/sessions/{session['id']}/nodes/node1/")
        _, still = server.request("GET", f"/api/sessions/{session['id']}/")
        server.request("DELETE", f"/api/sessions/{session['id']}/")

    assert reaped.returncode == 0, reaped.stderr
    assert {"type": "error", "code": "node_gone", "message": "node1 is gone"} in terminal.messages
    assert terminal.ws.close_code == 4410
    assert after["status"] == "gone"
    assert still["id"] == session["id"]  # the session itself lives on


def test_a_node_removed_from_outside_answers_node_gone_everywhere_and_is_marked_once(
    engine, tmp_path
):
    """No reaper pass: the exec that meets the vanished container marks the node gone
    (one ``node.gone`` for viewers), and a terminal opened after it is closed with 4410."""
    with restartable_server(tmp_path) as server:
        session = _created(server, "/api/sessions/")
        sid = session["id"]
        _created(server, f"/api/sessions/{sid}/nodes/")
        events_url = server.url.replace("http", "ws") + f"/ws/sessions/{sid}/events/"
        with websockets.sync.client.connect(events_url, open_timeout=20) as events:
            engine.client().api.remove_container(_container_of(server, sid), force=True)

            exec_path = f"/api/sessions/{sid}/nodes/node1/exec/"
            first = server.request("POST", exec_path, {"command": ["true"]})
            again = server.request("POST", exec_path, {"command": ["true"]})
            _, listed = server.request("GET", f"/api/sessions/{sid}/nodes/node1/")
            terminal = WsTerminal(server, f"/ws/sessions/{sid}/nodes/node1/terminal/")
            terminal.until(lambda t: t.closed, within=20)
            heard = []
            with contextlib.suppress(TimeoutError):
                while True:
                    heard.append(json.loads(events.recv(timeout=2)))
        server.request("DELETE", f"/api/sessions/{sid}/")

    assert first[0] == 410, first
    assert first[1]["error"]["code"] == "node_gone"
    assert again == first
    assert listed["status"] == "gone"
    assert {"type": "error", "code": "node_gone", "message": "node1 is gone"} in terminal.messages
    assert terminal.ws.close_code == 4410
    assert [e for e in heard if e.get("type") == "node.gone"] == [
        {"type": "node.gone", "name": "node1"}
    ]


# --- port URLs (the proxy itself: tests/test_ports.py) -----------------------------------


def _port_status(server, host: str) -> tuple[int, str]:
    from tests.port_servers import fetch

    status, body, _ = fetch(server.url + "/", host=host)
    code = json.loads(body)["error"]["code"] if status >= 400 else ""
    return status, code


def _port_until(server, host: str, wanted: tuple[int, str], within: float = 30) -> tuple:
    """The port URL's answer once it is ``wanted`` (or the last one after ``within``)."""
    deadline = time.monotonic() + within
    while True:
        answer = _port_status(server, host)
        if answer == wanted or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def _serving(server) -> tuple[dict, str]:
    """A session whose node1 serves HTTP on 8000, and that port's host name."""
    from tests.port_servers import port_entry, start_in_node

    session = _created(server, "/api/sessions/")
    _created(server, f"/api/sessions/{session['id']}/nodes/")
    start_in_node(server, session["id"], "node1", "http", 8000)
    url = port_entry(server, session["id"], "node1", 8000)["url"]
    return session, urllib.parse.urlsplit(url).netloc


def test_a_port_whose_server_dies_is_502_port_closed_and_answers_again_when_it_returns(
    engine, tmp_path
):
    from tests.port_servers import run_in_node, start_in_node

    with restartable_server(tmp_path) as server:
        session, host = _serving(server)
        up = _port_status(server, host)
        run_in_node(server, session["id"], "node1", "pkill -9 -f '[h]ttp 8000' || true")
        down = _port_until(server, host, (502, "port_closed"))
        start_in_node(server, session["id"], "node1", "http", 8000)
        back = _port_until(server, host, (200, ""))
        _, node = server.request("GET", f"/api/sessions/{session['id']}/nodes/node1/")
        server.request("DELETE", f"/api/sessions/{session['id']}/")

    assert up == (200, "")
    assert down == (502, "port_closed")
    assert back == (200, "")
    assert node["status"] == "running"


def test_a_node_removed_from_outside_has_its_port_urls_answer_404(engine, tmp_path):
    with restartable_server(tmp_path) as server:
        session, host = _serving(server)
        up = _port_status(server, host)
        engine.client().api.remove_container(_container_of(server, session["id"]), force=True)
        gone = _port_until(server, host, (404, "port_not_found"))
        server.request("DELETE", f"/api/sessions/{session['id']}/")

    assert up == (200, "")
    assert gone == (404, "port_not_found")


def test_files_of_a_node_removed_from_outside_answer_node_gone_and_leave_nothing(engine, tmp_path):
    """A download under way when the node's container goes ends short (never a whole
    answer); afterwards both directions answer 410 node_gone, and the node is gone."""
    with restartable_server(tmp_path) as server:
        sid = _created(server, "/api/sessions/")["id"]
        _created(server, f"/api/sessions/{sid}/nodes/")
        url = f"{server.url}/api/sessions/{sid}/nodes/node1/files/"
        server.request(
            "POST",
            f"/api/sessions/{sid}/nodes/node1/exec/",
            {"command": ["sh", "-c", "head -c 50000000 /dev/urandom > /root/big"], "timeout": 60},
        )
        received, cut_short = 0, False
        with urllib.request.urlopen(url + "?path=/root/big", timeout=60) as response:
            length = int(response.headers["Content-Length"])
            received += len(response.read(1 << 20))
            engine.client().api.remove_container(_container_of(server, sid), force=True)
            try:
                while block := response.read(1 << 20):
                    received += len(block)
            except (OSError, http.client.IncompleteRead):
                cut_short = True
        download = server.request("GET", "/api/sessions/" + sid + "/nodes/node1/files/")
        upload = subprocess.run(
            ["curl", "-sS", "-F", "file=@/etc/hostname", url], capture_output=True, text=True
        )
        _, listed = server.request("GET", f"/api/sessions/{sid}/nodes/node1/")
        server.request("DELETE", f"/api/sessions/{sid}/")

    assert cut_short or received < length
    assert download[0] == 410
    assert download[1]["error"]["code"] == "node_gone"
    assert json.loads(upload.stdout)["error"]["code"] == "node_gone"
    assert listed["status"] == "gone"
