"""Play with Docker compatibility over HTTP: the SDK's requests replayed on a live server
(daphne) against real nodes, and its CORS, statuses and bodies (docs/compat.md)."""

from __future__ import annotations

import http.server
import secrets
import threading

import pytest

from tests.compat_helpers import DOCS, XHR, Sdk, compat_server
from tests.port_servers import fetch, port_entry, start_in_node

pytestmark = pytest.mark.docker

ALLOWED_FETCH = "127.0.0.1"  # PWD_COMPAT_UPLOAD_HOSTS of the module's server


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compat-http")
    with compat_server(tmp, PWD_COMPAT_UPLOAD_HOSTS=ALLOWED_FETCH) as live:
        yield live


@pytest.fixture(scope="module")
def sdk(server) -> Sdk:
    return Sdk(server.url)


@pytest.fixture(scope="module")
def instance(sdk):
    """A session with one instance, made as the SDK makes them."""
    session = sdk.new_session()
    made = sdk.new_instance(session["session_id"])
    yield session["session_id"], made
    sdk.close(session["session_id"])


def multipart(filename: str, content: bytes, field: str = "file") -> tuple[bytes, str]:
    boundary = secrets.token_hex(12)
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


# --- CORS ------------------------------------------------------------------------------


def test_a_preflight_from_an_allowed_origin_answers_200_with_the_headers_it_asked(sdk):
    reply = sdk.call(
        "OPTIONS",
        "/",
        headers={
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-requested-with",
        },
    )
    assert reply.status == 200
    assert reply.body == b""
    assert reply.headers["access-control-allow-origin"] == DOCS
    assert reply.headers["access-control-allow-credentials"] == "true"
    assert reply.headers["access-control-allow-headers"] == "Content-Type,X-Requested-With"
    assert "access-control-allow-methods" not in reply.headers
    assert "access-control-max-age" not in reply.headers


def test_a_delete_preflight_is_allowed_delete(sdk):
    reply = sdk.call(
        "OPTIONS", "/sessions/abc", headers={"Access-Control-Request-Method": "DELETE"}
    )
    assert reply.status == 200
    assert reply.headers["access-control-allow-methods"] == "DELETE"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 400),
        ({"Access-Control-Request-Method": "PUT"}, 405),
        (
            {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "X-Evil"},
            403,
        ),
    ],
)
def test_a_bad_preflight_is_refused(sdk, headers, status):
    assert sdk.call("OPTIONS", "/sessions/abc/instances", headers=headers).status == status


@pytest.mark.parametrize(
    "origin", ["http://evil-docs.test:8080", "http://docs.test:8081", "https://docs.test:8080"]
)
def test_another_origin_gets_no_cors_headers_and_cannot_create(server, origin):
    foreign = Sdk(server.url, origin=origin)
    preflight = foreign.call("OPTIONS", "/", headers={"Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers
    reply = foreign.post_root()
    assert reply.status == 403
    assert reply.code == "origin_not_allowed"
    assert "access-control-allow-origin" not in reply.headers


# --- sessions ----------------------------------------------------------------------------


def test_post_root_with_xhr_answers_the_session_id_and_the_host(sdk, server):
    reply = sdk.post_root()
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["access-control-allow-origin"] == DOCS
    assert "no-store" in reply.headers["cache-control"]
    body = reply.json()
    assert set(body) == {"session_id", "hostname"}
    assert body["hostname"] == server.url.removeprefix("http://")
    got = sdk.call("GET", f"/sessions/{body['session_id']}", headers=XHR)
    assert got.status == 200
    assert got.json()["instances"] == {}
    assert sdk.close(body["session_id"]).status == 200


def test_post_root_without_xhr_redirects_to_the_session_page(sdk):
    reply = sdk.post_root(xhr=False)
    assert reply.status == 302
    assert reply.headers["location"].startswith("/p/")
    session_id = reply.headers["location"].split("/")[2]
    assert sdk.close(session_id).status == 200


def test_the_landing_page_is_still_at_get_root(sdk):
    reply = Sdk(sdk_url(sdk), origin=None).call("GET", "/")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/html")


def sdk_url(sdk: Sdk) -> str:
    return f"http://{sdk.host}:{sdk.port}"


@pytest.mark.parametrize(
    "form",
    ["session-duration=ninety", "session-duration=-5m", "session-duration=500h", "stack=x.yml"],
)
def test_post_root_refuses_a_bad_duration_or_a_stack(sdk, form):
    reply = sdk.post_root(form)
    assert reply.status == 400
    assert reply.code in {"bad_duration", "bad_stack"}


def test_the_fixed_routes_answer_as_pwd(sdk):
    assert (sdk.call("GET", "/ping").status, sdk.call("GET", "/ping").body) == (200, b"")
    providers = sdk.call("GET", "/oauth/providers")
    assert (providers.status, providers.body) == (200, b"[]\n")
    me = sdk.call("GET", "/users/me", headers=XHR)
    assert me.status == 401
    assert me.headers["access-control-allow-origin"] == DOCS


# --- instances, exec, uploads --------------------------------------------------------------


def test_an_instance_has_every_field_the_sdk_reads_and_no_session_id_in_proxy_host(sdk, instance):
    session_id, made = instance
    assert made["name"] == "node1"
    assert made["session_id"] == session_id
    assert session_id not in made["proxy_host"]
    assert made["proxy_host"].endswith("-node1")
    assert made["ip"]
    got = sdk.call("GET", f"/sessions/{session_id}", headers=XHR).json()
    assert list(got["instances"]) == ["node1"]
    assert got["instances"]["node1"]["proxy_host"] == made["proxy_host"]


def test_exec_answers_the_commands_exit_status(sdk, instance):
    session_id, _ = instance
    assert sdk.exec(session_id, "node1", ["sh", "-c", "exit 3"]) == 3
    assert sdk.exec(session_id, "node1", ["true"]) == 0


@pytest.mark.parametrize(
    "body",
    ['{"command": "ls -l"}', '"ls"', "{}", '{"command": []}', '{"command": [1, 2]}', "not json"],
)
def test_exec_refuses_a_command_that_is_not_an_array_of_strings(sdk, instance, body):
    session_id, _ = instance
    reply = sdk.json("POST", f"/sessions/{session_id}/instances/node1/exec", body)
    assert reply.status == 400
    assert reply.code == "invalid_request"


def test_a_multipart_upload_lands_in_the_path(sdk, instance):
    session_id, _ = instance
    directory = f"/tmp/up-{secrets.token_hex(3)}"
    assert sdk.exec(session_id, "node1", ["mkdir", "-p", directory]) == 0
    body, kind = multipart("hello.txt", b"hello from the sdk\n")
    reply = sdk.call(
        "POST",
        f"/sessions/{session_id}/instances/node1/uploads?url=&path={directory}",
        body,
        {**XHR, "Content-Type": kind},
    )
    assert reply.status == 200, reply.body
    assert reply.body == b""
    check = ["sh", "-c", f'test "$(cat {directory}/hello.txt)" = "hello from the sdk"']
    assert sdk.exec(session_id, "node1", check) == 0


def test_a_multipart_upload_past_the_api_body_limit_lands_too(sdk, instance):
    """Uploads have PWD_MAX_UPLOAD as the native files route has, not PWD_MAX_BODY."""
    session_id, _ = instance
    directory = f"/tmp/up-{secrets.token_hex(3)}"
    assert sdk.exec(session_id, "node1", ["mkdir", "-p", directory]) == 0
    data = secrets.token_bytes(3 << 20)  # 3 MiB, past the 1 MiB of PWD_MAX_BODY
    body, kind = multipart("big.bin", data)
    reply = sdk.call(
        "POST",
        f"/sessions/{session_id}/instances/node1/uploads?url=&path={directory}",
        body,
        {**XHR, "Content-Type": kind},
    )
    assert reply.status == 200, reply.body
    check = ["sh", "-c", f"test $(stat -c %s {directory}/big.bin) -eq {len(data)}"]
    assert sdk.exec(session_id, "node1", check) == 0


class _File(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the http.server name
        self.send_response(200)
        self.send_header("Content-Length", "9")
        self.end_headers()
        self.wfile.write(b"from url\n")

    def log_message(self, *args):
        pass


@pytest.fixture
def file_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _File)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()


def test_a_url_upload_is_fetched_from_an_allowed_host_only(sdk, instance, file_server):
    session_id, _ = instance
    directory = f"/tmp/url-{secrets.token_hex(3)}"
    assert sdk.exec(session_id, "node1", ["mkdir", "-p", directory]) == 0
    base = f"/sessions/{session_id}/instances/node1/uploads"
    refused = sdk.call(
        "POST", f"{base}?url=http://localhost:{file_server}/notes.txt&path={directory}", b"", XHR
    )
    assert refused.status == 400
    assert refused.code == "url_not_allowed"
    assert sdk.exec(session_id, "node1", ["test", "-e", f"{directory}/notes.txt"]) == 1
    fetched = sdk.call(
        "POST",
        f"{base}?url=http://{ALLOWED_FETCH}:{file_server}/notes.txt&path={directory}",
        b"",
        XHR,
    )
    assert fetched.status == 200, fetched.body
    assert sdk.exec(session_id, "node1", ["grep", "-qx", "from url", f"{directory}/notes.txt"]) == 0


def test_an_upload_that_is_not_multipart_is_400(sdk, instance):
    session_id, _ = instance
    reply = sdk.call(
        "POST",
        f"/sessions/{session_id}/instances/node1/uploads?url=&path=",
        b"plain",
        {**XHR, "Content-Type": "text/plain"},
    )
    assert reply.status == 400


@pytest.mark.parametrize(
    "body",
    [
        '{"ImageName": 5}',
        '{"Hostname": ["x"]}',
        '{"Envs": "A=B"}',
        '{"type": "mac"}',
        "[1]",
        "nope",
    ],
)
def test_instances_refuses_wrong_types_and_starts_nothing(sdk, instance, body):
    session_id, _ = instance
    reply = sdk.json("POST", f"/sessions/{session_id}/instances", body)
    assert reply.status == 400
    assert list(sdk.call("GET", f"/sessions/{session_id}", headers=XHR).json()["instances"]) == [
        "node1"
    ]


def test_a_windows_instance_is_401(sdk, instance):
    session_id, _ = instance
    assert sdk.json("POST", f"/sessions/{session_id}/instances", {"type": "windows"}).status == 401


# --- an unknown session, a wrong method ---------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/sessions/nosuch", 404),
        ("DELETE", "/sessions/nosuch", 404),
        ("POST", "/sessions/nosuch/close", 404),
        ("POST", "/sessions/nosuch/instances", 500),
        ("DELETE", "/sessions/nosuch/instances/node1", 500),
        ("POST", "/sessions/nosuch/instances/node1/exec", 404),
        ("POST", "/sessions/nosuch/setup", 500),
        ("PUT", "/sessions/nosuch", 405),
        ("GET", "/sessions/nosuch/close", 405),
    ],
)
def test_an_unknown_session_gets_pwds_status(sdk, method, path, status):
    bodies = {"exec": {"command": ["true"]}, "setup": {"instances": [{"is_swarm_manager": True}]}}
    body = next((b for key, b in bodies.items() if path.endswith(key)), {})
    reply = sdk.json(method, path, body)
    assert reply.status == status
    assert reply.json()["error"]["code"]


def test_close_ends_the_session(sdk):
    session_id = sdk.new_session()["session_id"]
    reply = sdk.call("POST", f"/sessions/{session_id}/close", b"", {"Content-Type": "text/plain"})
    assert (reply.status, reply.body) == (200, b"")
    assert sdk.call("GET", f"/sessions/{session_id}", headers=XHR).status == 404


def test_a_beacon_close_from_another_origin_is_refused(server, sdk):
    session_id = sdk.new_session()["session_id"]
    evil = Sdk(server.url, origin="http://evil.test")
    assert evil.call("POST", f"/sessions/{session_id}/close", b"").status == 403
    assert sdk.call("GET", f"/sessions/{session_id}", headers=XHR).status == 200
    assert sdk.close(session_id).status == 200


# --- port links --------------------------------------------------------------------------


def test_an_sdk_port_link_reaches_the_nodes_port_through_the_proxy(server, sdk, instance):
    session_id, made = instance
    start_in_node(server, session_id, "node1", "http", 8000)
    port_entry(server, session_id, "node1", 8000)
    site = server.url.removeprefix("http://")
    status, body, _ = fetch(server.url + "/", host=f"{made['proxy_host']}-8000.direct.{site}")
    assert status == 200, body
    assert body  # the page server in the node answered


@pytest.mark.parametrize(
    "label", ["{proxy}-8000.direct.evil.example", "nosuchtoken00000-node1-8000.direct.{site}"]
)
def test_a_port_link_to_another_site_or_a_bad_token_never_reaches_a_node(server, instance, label):
    _, made = instance
    host = label.format(proxy=made["proxy_host"], site=server.url.removeprefix("http://"))
    status, _, _ = fetch(server.url + "/", host=host)
    assert status in {400, 404}
