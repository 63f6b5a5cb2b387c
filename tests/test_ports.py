"""Port URLs against a real daphne and real nodes: servers started inside a node answer
through ``<token>-<node>-<port>.localhost``, in Chromium where a browser shows them, and
nothing else is reachable through the proxy (docs/security.md, "The port proxy")."""

import json
import os
import secrets
import socket as socket_module
import time
from urllib.parse import urlsplit

import pytest
import websockets.sync.client

from tests.conftest import missing
from tests.live_server import live_server
from tests.port_servers import error_code, fetch, port_entry, run_in_node, start_in_node
from tests.test_terminal_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.docker, pytest.mark.browser]


def _created(server, path: str) -> dict:
    status, body = server.request("POST", path, {})
    assert status == 201, body
    return body


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("ports"), PWD_POOL_PREPARE="false") as live:
        yield live
        print(live.log.read_text()[-4000:])


@pytest.fixture(scope="module")
def served(server):
    """Session A: node1 with the page server on 8000 and the echo server on 8001."""
    session = _created(server, "/api/sessions/")
    _created(server, f"/api/sessions/{session['id']}/nodes/")
    start_in_node(server, session["id"], "node1", "http", 8000)
    start_in_node(server, session["id"], "node1", "ws", 8001)
    page = port_entry(server, session["id"], "node1", 8000)
    port_entry(server, session["id"], "node1", 8001)
    token = urlsplit(page["url"]).hostname.split("-")[0]
    return {"id": session["id"], "token": token, "url": page["url"]}


@pytest.fixture(scope="module")
def other(server):
    """Session B: node1 with nothing listening, and its token (read from its database)."""
    session = _created(server, "/api/sessions/")
    _created(server, f"/api/sessions/{session['id']}/nodes/")
    return {"id": session["id"], "token": _token(server, session["id"])}


def _token(server, session_id: str) -> str:
    done = server.python(
        "from sessions_app.models import Session\n"
        f"print(Session.objects.get(pk={session_id!r}).port_token)"
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def _app_port(server) -> int:
    return urlsplit(server.url).port


def _via_proxy(server, host: str, path: str = "/") -> tuple[int, bytes, object]:
    """A request to the server's own socket for ``host`` (*.localhost is loopback)."""
    return fetch(server.url + path, host=host)


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        missing(f"Chromium is not at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--no-proxy-server"]
        )
        yield browser
        browser.close()


def test_the_node_json_lists_an_open_port_with_its_url(server, served):
    _, session = server.request("GET", f"/api/sessions/{served['id']}/")
    ports = {entry["port"]: entry["url"] for entry in session["nodes"][0]["ports"]}

    assert ports[8000] == f"http://{served['token']}-node1-8000.localhost:{_app_port(server)}/"
    assert ports[8001].startswith(f"http://{served['token']}-node1-8001.localhost:")
    assert served["token"] != served["id"]


def test_a_web_server_in_a_node_answers_through_its_port_url_in_chromium(server, served, browser):
    run_in_node(
        server,
        served["id"],
        "node1",
        "mkdir -p /srv/site && echo '<h1>static from python</h1>' > /srv/site/index.html && "
        "cd /srv/site && (setsid python3 -m http.server 8080 >/dev/null 2>&1 </dev/null &)",
    )
    url = port_entry(server, served["id"], "node1", 8080)["url"]
    page = browser.new_page()
    try:
        response = page.goto(url)
        assert response.status == 200
        assert page.locator("h1").inner_text() == "static from python"
    finally:
        page.close()


def test_a_container_published_with_p_in_a_node_answers_through_its_port_url_in_chromium(
    server, served, browser
):
    run_in_node(
        server,
        served["id"],
        "node1",
        "pwd-busybox-image >/dev/null && docker run -d -p 8090:80 busybox "
        'sh -c \'mkdir -p /www && echo "<h1>inner container</h1>" > /www/index.html && '
        "exec httpd -f -p 80 -h /www' >/dev/null",
        seconds=120,
    )
    url = port_entry(server, served["id"], "node1", 8090)["url"]
    page = browser.new_page()
    try:
        response = page.goto(url)
        assert response.status == 200
        assert page.locator("h1").inner_text() == "inner container"
    finally:
        page.close()


def test_a_websocket_echo_server_in_a_node_answers_through_the_proxy(server, served):
    host = f"{served['token']}-node1-8001.localhost:{_app_port(server)}"
    sock = socket_module.create_connection(("127.0.0.1", _app_port(server)), timeout=10)
    with websockets.sync.client.connect(f"ws://{host}/echo", sock=sock, open_timeout=10) as socket:
        socket.send("hello through the proxy")
        assert socket.recv(timeout=10) == "hello through the proxy"
        payload = secrets.token_bytes(200_000)
        socket.send(payload)
        assert socket.recv(timeout=10) == payload


def test_a_page_on_a_port_url_uses_a_websocket_to_its_node_in_chromium(server, served, browser):
    page = browser.new_page()
    try:
        page.goto(served["url"])
        echoed = page.evaluate(
            """(url) => new Promise((resolve, reject) => {
                const socket = new WebSocket(url);
                socket.onopen = () => socket.send("from the browser");
                socket.onmessage = (event) => { resolve(event.data); socket.close(); };
                socket.onerror = () => reject(new Error("websocket failed"));
            })""",
            served["url"].replace("http://", "ws://").replace("-8000.", "-8001."),
        )
        assert echoed == "from the browser"
    finally:
        page.close()


def _events(server, session_id: str):
    port = _app_port(server)
    return websockets.sync.client.connect(
        f"ws://127.0.0.1:{port}/ws/sessions/{session_id}/events/", open_timeout=10
    )


def _ports_event(viewer, node: str, want, within: float = 30) -> dict:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            event = json.loads(viewer.recv(timeout=max(0.1, deadline - time.monotonic())))
        except TimeoutError:
            break
        if event.get("type") == "node.ports" and event["name"] == node and want(event):
            return event
    raise AssertionError("no node.ports event as wanted")


def test_an_event_announces_a_port_opening_and_closing(server, served):
    with _events(server, served["id"]) as viewer:
        start_in_node(server, served["id"], "node1", "http", 8100)
        opened = _ports_event(viewer, "node1", lambda e: 8100 in [p["port"] for p in e["ports"]])
        assert {"port": 8100, "url": opened["ports"][-1]["url"]} in opened["ports"]
        run_in_node(server, served["id"], "node1", "pkill -f '[h]ttp 8100' || true")
        _ports_event(viewer, "node1", lambda e: 8100 not in [p["port"] for p in e["ports"]])


def test_the_session_page_shows_a_port_as_a_link_when_it_opens(server, served, browser):
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        page.goto(f"{server.url}/p/{served['id']}/")
        page.wait_for_selector(".node", timeout=30_000)
        assert not problems
        start_in_node(server, served["id"], "node1", "http", 8200)
        link = page.locator("a.port-link", has_text="8200")
        link.wait_for(timeout=30_000)
        href = link.get_attribute("href")
        assert href == f"http://{served['token']}-node1-8200.localhost:{_app_port(server)}/"
        assert link.get_attribute("rel") == "noopener noreferrer"
    finally:
        page.close()


# --- what the proxy must never reach -----------------------------------------------------


def test_a_foreign_session_token_gets_404_and_never_the_other_node(server, served, other):
    port = _app_port(server)
    # B's token names B's node1, where nothing listens on 8000: never A's page.
    status, body, _ = _via_proxy(server, f"{other['token']}-node1-8000.localhost:{port}")
    assert (status, error_code(body)) == (502, "port_closed")
    # A has no node2; B's node1 is not A's node2 either.
    status, body, _ = _via_proxy(server, f"{served['token']}-node2-8000.localhost:{port}")
    assert (status, error_code(body)) == (404, "port_not_found")


def test_an_ended_sessions_token_gets_404(server):
    session = _created(server, "/api/sessions/")
    _created(server, f"/api/sessions/{session['id']}/nodes/")
    start_in_node(server, session["id"], "node1", "http", 8000)
    entry = port_entry(server, session["id"], "node1", 8000)
    host = urlsplit(entry["url"]).netloc
    assert _via_proxy(server, host)[0] == 200

    status, _ = server.request("DELETE", f"/api/sessions/{session['id']}/")
    assert status == 204
    status, body, _ = _via_proxy(server, host)
    assert (status, error_code(body)) == (404, "port_not_found")


@pytest.mark.parametrize(
    "label",
    [
        "{random}-node1-8000",
        "{session_id}-node1-8000",
        "{token_short}-node1-8000",
        "{token}x-node1-8000",
        "{token_underscore}-node1-8000",
        "{token}-node1-0",
        "{token}-node1-65536",
        "{token}-node0-8000",
        "{token}-127.0.0.1-8000",
        "{token}-node1",
    ],
)
def test_a_bad_token_or_name_under_the_ports_domain_gets_404(server, served, label):
    values = {
        "random": secrets.token_hex(8),
        "session_id": served["id"].lower(),
        "token": served["token"],
        "token_short": served["token"][:-1],
        "token_underscore": served["token"][:-1] + "_",
    }
    host = label.format(**values) + f".localhost:{_app_port(server)}"
    status, body, _ = _via_proxy(server, host)
    assert (status, error_code(body)) == (404, "port_not_found")


def test_a_closed_port_gets_a_clear_502(server, served):
    host = f"{served['token']}-node1-9999.localhost:{_app_port(server)}"
    status, body, _ = _via_proxy(server, host)
    assert status == 502
    assert json.loads(body)["error"] == {
        "code": "port_closed",
        "message": "Nothing answers on this port of the node (yet).",
    }


def test_host_names_are_case_insensitive(server, served):
    host = f"{served['token']}-node1-8000.localhost:{_app_port(server)}".upper()
    status, body, _ = _via_proxy(server, host)
    assert status == 200
    assert b"hello from the node" in body


def test_the_proxy_cannot_be_pointed_at_the_app_or_the_host(server, served):
    port = _app_port(server)
    # The app's own port as the port: that port of the node, where nothing listens.
    status, body, _ = _via_proxy(server, f"{served['token']}-node1-{port}.localhost:{port}")
    assert (status, error_code(body)) == (502, "port_closed")
    # Names that only look like port URLs are the app's, which refuses foreign hosts.
    for host in [
        f"{served['token']}-node1-8000.localhost.example.com",
        f"{served['token']}-node1-8000.localhostx:{port}",
        f"127.0.0.1.localhost:{port}",
        f"{served['token']}-node1-8000.localhost:x{port}",
    ]:
        status, body, _ = _via_proxy(server, host, "/healthz")
        assert b"hello from the node" not in body, host
        assert status in (400, 404), (host, status)
    # The page's headers show what the node got: the browser's Host, no app address.
    status, body, _ = _via_proxy(server, f"{served['token']}-node1-8000.localhost:{port}")
    assert status == 200
    assert f"{served['token']}-node1-8000.localhost:{port}".encode() in body


def test_a_page_on_a_port_url_gets_no_app_cookie_and_cannot_use_the_api(server, served, browser):
    context = browser.new_context()
    try:
        app = server.url
        page = context.new_page()
        page.goto(app + "/")
        context.add_cookies(
            [
                {"name": "sessionid", "value": "app-secret", "url": app},
                {
                    "name": "sessionid",
                    "value": "app-secret",
                    "url": app.replace("127.0.0.1", "localhost"),
                },
            ]
        )
        assert any(c["name"] == "csrftoken" for c in context.cookies(app))

        page.goto(served["url"])
        page.reload()
        headers = json.loads(page.locator("#headers").inner_text())
        sent = {k.lower(): v for k, v in headers.items()}.get("cookie", "")
        assert "app-secret" not in sent
        assert "csrftoken" not in sent
        # The node's own cookie comes back; one for the whole ports domain was dropped.
        assert "trainee=mine" in sent
        assert "wide=" not in sent

        outcome = page.evaluate(
            """(api) => fetch(api, {method: "POST", headers: {"Content-Type": "application/json"},
                                     body: "{}", credentials: "include"})
                .then((r) => "status " + r.status, (e) => "refused " + e.name)""",
            app + "/api/sessions/",
        )
        assert outcome.startswith(("refused", "status 403")), outcome
    finally:
        context.close()

    origin = urlsplit(served["url"])
    status, body = _post_with_origin(server, f"{origin.scheme}://{origin.netloc}")
    assert (status, body["error"]["code"]) == (403, "origin_not_allowed")


def _post_with_origin(server, origin: str) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        server.url + "/api/sessions/",
        data=b"{}",
        method="POST",
        headers={"Content-Type": "application/json", "Origin": origin},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize(
    "label", ["{token}-node1-9998", "{random}-node1-8001", "{token}-node7-8001"]
)
def test_a_websocket_to_a_closed_port_or_a_bad_name_is_refused_at_the_handshake(
    server, served, label
):
    from websockets.exceptions import InvalidStatus

    name = label.format(token=served["token"], random=secrets.token_hex(8))
    host = f"{name}.localhost:{_app_port(server)}"
    sock = socket_module.create_connection(("127.0.0.1", _app_port(server)), timeout=10)
    with pytest.raises(InvalidStatus) as refused:
        websockets.sync.client.connect(f"ws://{host}/", sock=sock, open_timeout=10)
    assert refused.value.response.status_code == 403
