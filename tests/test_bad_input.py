"""Bad input, table-driven: each row is a request or frame pwd must refuse with the right
status (or error code) while creating nothing and losing nothing.

Rows that need nodes running (a sixth node, two adds racing for the last slot) live in
tests/test_nodes_api.py; docs/reliability.md lists them all.
"""

import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import AsyncClient
from django.utils import timezone

from sessions_app import engine
from sessions_app.models import Node, Session
from tests.api_helpers import error_of
from tests.test_terminal_consumer import _open, container, node  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db(transaction=True)

BIG = json.dumps({"padding": "x" * 100_000})

# (method, path, body, status, error code); {live} and {ended} are session ids.
HTTP_CASES = [
    ("GET", "/api/sessions/unknown-session-id/", None, 404, "session_not_found"),
    ("GET", "/api/sessions/{ended}/", None, 404, "session_not_found"),
    ("DELETE", "/api/sessions/{ended}/", None, 404, "session_not_found"),
    ("POST", "/api/sessions/{ended}/nodes/", None, 404, "session_not_found"),
    ("GET", "/api/sessions/" + "x" * 5000 + "/", None, 404, "session_not_found"),
    ("GET", "/api/sessions/%00%ff/", None, 404, "session_not_found"),
    ("GET", "/api/sessions/{live}/nodes/node9/", None, 404, "node_not_found"),
    ("DELETE", "/api/sessions/{live}/nodes/../", None, 404, None),
    ("PUT", "/api/sessions/", "{}", 405, "method_not_allowed"),
    ("POST", "/api/sessions/", "{not json", 400, "invalid_json"),
    ("POST", "/api/sessions/", b"\xff\xfe\x00", 400, "invalid_json"),
    ("POST", "/api/sessions/", "[1, 2]", 400, "invalid_request"),
    ("POST", "/api/sessions/", "null", 400, "invalid_request"),
    ("POST", "/api/sessions/", BIG, 413, "body_too_large"),
    ("POST", "/api/sessions/{live}/nodes/", BIG, 413, "body_too_large"),
    ("POST", "/api/sessions/{live}/nodes/", '{"image": "ubuntu"}', 400, "bad_image"),
    ("POST", "/api/sessions/{live}/nodes/", '{"image": 5}', 400, "bad_image"),
    ("POST", "/api/sessions/{live}/nodes/", '{"image": ["pwd-node"]}', 400, "bad_image"),
    ("POST", "/api/sessions/{live}/nodes/", '{"image": "pwd-node "}', 400, "bad_image"),
    ("POST", "/api/sessions/{live}/nodes/node1/exec/", '{"command": "ls"}', 400, None),
    ("POST", "/api/sessions/{live}/nodes/node1/exec/", '{"command": []}', 400, None),
    ("POST", "/api/sessions/{live}/nodes/node1/exec/", '{"command": [1]}', 400, None),
    (
        "POST",
        "/api/sessions/{live}/nodes/node1/exec/",
        '{"command": ["ls"], "timeout": 0}',
        400,
        None,
    ),
    (
        "POST",
        "/api/sessions/{live}/nodes/node1/exec/",
        '{"command": ["ls"], "timeout": -5}',
        400,
        None,
    ),
    (
        "POST",
        "/api/sessions/{live}/nodes/node1/exec/",
        '{"command": ["ls"], "timeout": 1e9}',
        400,
        None,
    ),
    (
        "POST",
        "/api/sessions/{live}/nodes/node1/exec/",
        '{"command": ["ls"], "timeout": "9"}',
        400,
        None,
    ),
    (
        "POST",
        "/api/sessions/{live}/nodes/node1/exec/",
        '{"command": ["ls"], "timeout": true}',
        400,
        None,
    ),
    (
        "POST",
        "/api/sessions/{live}/nodes/node1/exec/",
        '{"command": ["ls"]}',
        404,
        "node_not_found",
    ),
    ("POST", "/api/sessions/{ended}/extend/", None, 404, "session_not_found"),
    ("POST", "/api/sessions/unknown-session-id/extend/", None, 404, "session_not_found"),
    ("GET", "/api/sessions/{live}/extend/", None, 405, "method_not_allowed"),
    ("POST", "/api/sessions/{live}/extend/", "{not json", 400, "invalid_json"),
    ("POST", "/api/sessions/{live}/extend/", "[1, 2]", 400, "invalid_request"),
    ("POST", "/api/sessions/{live}/extend/", BIG, 413, "body_too_large"),
    ("POST", "/api/sessions/{live}/setup/", '{"template": "9-managers"}', 400, "unknown_template"),
    ("POST", "/api/sessions/{live}/setup/", '{"template": 5}', 400, "invalid_request"),
    ("POST", "/api/sessions/{live}/setup/", '{"template": null}', 400, "invalid_request"),
    ("POST", "/api/sessions/{live}/setup/", None, 400, "invalid_request"),
    ("POST", "/api/sessions/{live}/setup/", "{}", 400, "invalid_request"),
    (
        "POST",
        "/api/sessions/{live}/setup/",
        '{"template": "5-managers", "nodes": [{"role": "manager"}]}',
        400,
        "invalid_request",
    ),
    ("POST", "/api/sessions/{live}/setup/", '{"nodes": []}', 400, "invalid_request"),
    (
        "POST",
        "/api/sessions/{live}/setup/",
        '{"nodes": [{"role": "boss"}]}',
        400,
        "invalid_request",
    ),
    (
        "POST",
        "/api/sessions/{live}/setup/",
        '{"nodes": [{"role": "worker"}]}',
        400,
        "invalid_request",
    ),
    ("POST", "/api/sessions/{live}/setup/", '{"nodes": [{}]}', 400, "invalid_request"),
    (
        "POST",
        "/api/sessions/{live}/setup/",
        '{"nodes": [{"role": "manager", "image": "pwd-node"}]}',
        400,
        "invalid_request",
    ),
    (
        "POST",
        "/api/sessions/{live}/setup/",
        '{"nodes": [{"role": "manager", "run": "docker ps"}]}',
        400,
        "invalid_request",
    ),
    (
        "POST",
        "/api/sessions/{live}/setup/",
        '{"nodes": [{"role": "manager", "run": [[]]}]}',
        400,
        "invalid_request",
    ),
    (
        "POST",
        "/api/sessions/{live}/setup/",
        '{"nodes": [{"role": "manager", "run": [["docker", 1]]}]}',
        400,
        "invalid_request",
    ),
    (
        "POST",
        "/api/sessions/{live}/setup/",
        json.dumps({"nodes": [{"role": "manager"}] * 6}),
        409,
        "node_limit_reached",
    ),
    ("POST", "/api/sessions/{live}/setup/", BIG, 413, "body_too_large"),
    ("GET", "/api/sessions/{live}/setup/", None, 405, "method_not_allowed"),
    (
        "POST",
        "/api/sessions/{ended}/setup/",
        '{"template": "5-managers"}',
        404,
        "session_not_found",
    ),
    # Files (the rows that need a node, traversal, symlinks, size: tests/test_files.py).
    ("GET", "/api/sessions/{ended}/nodes/node1/files/", None, 404, "session_not_found"),
    ("GET", "/api/sessions/{live}/nodes/node1/files/", None, 404, "node_not_found"),
    ("GET", "/api/sessions/{live}/nodes/node1/files/?path=a%00b", None, 400, "bad_path"),
    ("GET", "/api/sessions/{live}/nodes/node1/files/?path=" + "x" * 5000, None, 400, "bad_path"),
    ("POST", "/api/sessions/{live}/nodes/node1/files/", "{}", 415, "unsupported_media_type"),
    ("POST", "/api/sessions/{ended}/nodes/node1/files/", "{}", 404, "session_not_found"),
    ("DELETE", "/api/sessions/{live}/nodes/node1/files/", None, 405, "method_not_allowed"),
]


@pytest.fixture
async def ids(monkeypatch):
    """A live session (no network needed: nothing here may reach the engine) and an ended one."""
    monkeypatch.setattr(engine, "create_session_network", lambda session_id: ("unused", "unused"))
    live = await Session.objects.acreate()
    ended = await Session.objects.acreate()
    await Session.objects.filter(pk=ended.pk).aupdate(ended_at=ended.created_at)
    return {"live": live.id, "ended": ended.id}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    HTTP_CASES,
    ids=[f"{c[0]} {c[1][:40]} {str(c[2])[:30]}" for c in HTTP_CASES],
)
async def test_a_bad_request_gets_its_status_and_creates_nothing(
    ids, method, path, body, status, code
):
    response = await AsyncClient().generic(
        method,
        path.format(**ids),
        b"" if body is None else body,
        content_type="application/json",
    )

    assert response.status_code == status, response.content
    if status != 404 or code:
        error = error_of(response)
        assert code is None or error["code"] == code
    assert await Session.objects.acount() == 2
    assert not await Node.objects.aexists()


WS_CASES = [
    ('{"type": "resize", "cols": -1, "rows": 24}', "invalid_resize"),
    ('{"type": "resize", "cols": 80, "rows": 0}', "invalid_resize"),
    ('{"type": "resize", "cols": 80.5, "rows": 24}', "invalid_resize"),
    ('{"type": "resize", "cols": true, "rows": 24}', "invalid_resize"),
    ('{"type": "resize"}', "invalid_resize"),
    ('{"type": "ack", "bytes": -1}', "invalid_ack"),
    ('{"type": "input"}', "invalid_input"),
    ('{"type": "input", "data": ["ls"]}', "invalid_input"),
    ('{"type": "input", "data": "' + "x" * (300 * 1024) + '"}', "too_large"),
    ('"just a string"', "unknown_type"),
    ("{}", "unknown_type"),
    ("   ", "invalid_json"),
]


@pytest.mark.docker
@pytest.mark.parametrize(("frame", "code"), WS_CASES, ids=[c[0][:40] for c in WS_CASES])
async def test_a_bad_terminal_frame_is_refused_and_the_shell_goes_on(node, frame, code):  # noqa: F811
    terminal = await _open(node)
    await terminal.comm.send_to(text_data=frame)
    await terminal.until(lambda t: t.errors())
    await terminal.type("echo still-$((2+3))\r")
    await terminal.until_text("still-5\r\n")

    assert terminal.errors()[0]["code"] == code
    assert terminal.closed is None
    await terminal.close()


async def test_extend_past_the_maximum_is_409_at_maximum_and_changes_nothing():
    now = timezone.now()
    session = await Session.objects.acreate(
        created_at=now - timedelta(seconds=settings.PWD_SESSION_LIFETIME - 300),
        last_activity_at=now - timedelta(seconds=60),
    )

    response = await AsyncClient().post(
        f"/api/sessions/{session.id}/extend/", "", content_type="application/json"
    )

    assert response.status_code == 409, response.content
    assert error_of(response)["code"] == "at_maximum"
    row = await Session.objects.aget(pk=session.id)
    assert (row.created_at, row.last_activity_at, row.expiry_warned_at, row.ended_at) == (
        session.created_at,
        session.last_activity_at,
        None,
        None,
    )


async def test_a_template_on_a_session_with_nodes_is_409_and_changes_nothing():
    session = await Session.objects.acreate()
    await Node.objects.acreate(
        session=session, name="node1", hostname="node1", image="pwd-node", status="running"
    )

    response = await AsyncClient().post(
        f"/api/sessions/{session.id}/setup/",
        '{"template": "1-manager-1-worker"}',
        content_type="application/json",
    )

    assert response.status_code == 409, response.content
    assert error_of(response)["code"] == "session_not_empty"
    assert [(n.name, n.status) async for n in Node.objects.all()] == [("node1", "running")]
    assert (await Session.objects.aget(pk=session.id)).setup_started_at is None


# --- port URLs: names under PWD_PORTS_DOMAIN that no running node answers to -------------
# (against real nodes, with the browser: tests/test_ports.py)

PORT_CASES = [
    ("{random}-node1-8000", "an unknown token"),
    ("{session_id}-node1-8000", "the session id instead of the token"),
    ("{ended}-node1-8000", "an ended session's token"),
    ("{other}-node1-8000", "another session's token, which has no node1"),
    ("{live}-node2-8000", "a node the session does not have"),
    ("{live}-node1-0", "port 0"),
    ("{live}-node1-65536", "a port past 65535"),
    ("{live}-127.0.0.1-8000", "an address for a node name"),
    ("{live}_-node1-8000", "a token with _"),
    ("{live}-node1-8000.localhost:x", "a port that is not a number"),
]


async def _through_the_router(host: str) -> tuple[int | None, bytes, bool]:
    """``(status, body, whether the app behind the router was called)``."""
    from pwd_site.portproxy import PortRouter

    app_called = False

    async def app(scope, receive, send):
        nonlocal app_called
        app_called = True

    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "scheme": "http",
        "headers": [(b"host", host.encode())],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 40000),
    }
    await PortRouter(app)(scope, receive, send)
    status = next((m["status"] for m in sent if m["type"] == "http.response.start"), None)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, app_called


@pytest.mark.parametrize(("label", "why"), PORT_CASES, ids=[c[1] for c in PORT_CASES])
async def test_a_port_url_no_running_node_answers_to_is_404_and_changes_nothing(label, why):
    live = await Session.objects.acreate()
    other = await Session.objects.acreate()
    ended = await Session.objects.acreate()
    await Session.objects.filter(pk=ended.pk).aupdate(ended_at=ended.created_at)
    await Node.objects.acreate(
        session=live, name="node1", hostname="node1", image="pwd-node", status="running"
    )
    await Node.objects.acreate(
        session=ended, name="node1", hostname="node1", image="pwd-node", status="running"
    )
    host = label.format(
        random="q" * 16,
        session_id=live.id.lower(),
        live=live.port_token,
        other=other.port_token,
        ended=ended.port_token,
    )
    if ".localhost" not in host:
        host += ".localhost:8000"

    status, body, app_called = await _through_the_router(host)

    assert (status, json.loads(body)["error"]["code"]) == (404, "port_not_found"), why
    assert not app_called
    assert await Session.objects.acount() == 3
    assert await Node.objects.acount() == 2


@pytest.mark.parametrize(
    "host",
    ["{live}-node1-8000.localhost.example.com", "{live}-node1-8000.localhostx", "localhost:8000"],
)
async def test_a_name_that_only_looks_like_a_port_url_is_the_apps(host):
    live = await Session.objects.acreate()

    status, _, app_called = await _through_the_router(host.format(live=live.port_token))

    assert app_called
    assert status is None


# The native embed's routes (front/embed.py): (method, path, Origin, status, error code).
EMBED_ORIGIN = "https://docs.example.org"
EMBED_CASES = [
    ("POST", "/embed/sessions/", "https://evil.example", 403, "origin_not_allowed"),
    ("POST", "/embed/sessions/", "https://docs.example.org.evil.com", 403, "origin_not_allowed"),
    ("POST", "/embed/sessions/", "https://evil-docs.example.org", 403, "origin_not_allowed"),
    ("POST", "/embed/sessions/", None, 403, "origin_not_allowed"),
    ("OPTIONS", "/embed/sessions/", "https://evil.example", 403, "origin_not_allowed"),
    ("GET", "/embed/sessions/", EMBED_ORIGIN, 405, "method_not_allowed"),
    ("DELETE", "/embed/sessions/", EMBED_ORIGIN, 405, "method_not_allowed"),
    ("POST", "/embed/sessions/unknown-session-id/end/", EMBED_ORIGIN, 404, "session_not_found"),
    (
        "POST",
        "/embed/sessions/unknown-session-id/end/",
        "https://evil.example",
        403,
        "origin_not_allowed",
    ),
    ("POST", "/embed/sessions/unknown-session-id/end/", None, 403, "origin_not_allowed"),
    ("GET", "/embed/sessions/unknown-session-id/end/", EMBED_ORIGIN, 405, "method_not_allowed"),
    ("GET", "/embed/?node=../node1", None, 400, "invalid_node"),
    ("GET", "/embed/?node=" + "n" * 33, None, 400, "invalid_node"),
    ("GET", "/embed/?node=node1&image=ubuntu", None, 400, "invalid_image"),
]


@pytest.mark.parametrize(
    ("method", "path", "origin", "status", "code"),
    EMBED_CASES,
    ids=[f"{c[0]} {c[1][:40]} {c[2]}" for c in EMBED_CASES],
)
async def test_a_bad_embed_request_gets_its_status_and_creates_nothing(
    settings, method, path, origin, status, code
):
    settings.PWD_EMBED_ORIGINS = [EMBED_ORIGIN]
    headers = {"Origin": origin} if origin else {}
    response = await AsyncClient().generic(
        method, path, b"{}", content_type="application/json", headers=headers
    )

    assert response.status_code == status, response.content
    assert error_of(response)["code"] == code
    assert not await Session.objects.aexists()


# Play with Docker's routes (pwd_compat, docs/compat.md): (method, path, body, Origin,
# status, error code); {live} and {ended} are session ids. None may reach the engine.
COMPAT_ORIGIN = "https://training.example.org"
FORM = "application/x-www-form-urlencoded"
COMPAT_CASES = [
    ("POST", "/", "session-duration=ninety", None, 400, "bad_duration"),
    ("POST", "/", "session-duration=-1h", None, 400, "bad_duration"),
    ("POST", "/", "session-duration=0", None, 400, "bad_duration"),
    ("POST", "/", "session-duration=999h", None, 400, "bad_duration"),
    ("POST", "/", "stack=https://x.example/stack.yml", None, 400, "bad_stack"),
    ("POST", "/", "image_name=ubuntu", None, 400, "bad_image"),
    ("POST", "/", "session-duration=90m", "https://evil.example", 403, "origin_not_allowed"),
    ("POST", "/", "", "https://evil-training.example.org", 403, "origin_not_allowed"),
    ("GET", "/sessions/{ended}", None, None, 404, "session_not_found"),
    ("DELETE", "/sessions/{ended}", None, None, 404, "session_not_found"),
    ("PUT", "/sessions/{live}", None, None, 405, "method_not_allowed"),
    ("POST", "/sessions/{live}/close", "", "https://evil.example", 403, "origin_not_allowed"),
    ("DELETE", "/sessions/{live}", "", "https://evil.example", 403, "origin_not_allowed"),
    ("POST", "/sessions/{ended}/instances", "{}", None, 500, "session_not_found"),
    ("POST", "/sessions/{live}/instances", '{"ImageName": 5}', None, 400, "invalid_request"),
    ("POST", "/sessions/{live}/instances", '{"imagename": "ubuntu"}', None, 400, "bad_image"),
    ("POST", "/sessions/{live}/instances", '{"Envs": "A=B"}', None, 400, "invalid_request"),
    ("POST", "/sessions/{live}/instances", '{"Networks": [1]}', None, 400, "invalid_request"),
    ("POST", "/sessions/{live}/instances", '{"type": "windows"}', None, 401, "windows_not_allowed"),
    ("POST", "/sessions/{live}/instances", "[1]", None, 400, "invalid_json"),
    ("POST", "/sessions/{live}/instances", "{nope", None, 400, "invalid_json"),
    ("DELETE", "/sessions/{ended}/instances/node1", None, None, 500, "session_not_found"),
    (
        "POST",
        "/sessions/{live}/instances/node1/exec",
        '{"command": "ls"}',
        None,
        400,
        "invalid_request",
    ),
    ("POST", "/sessions/{live}/instances/node1/exec", '"ls"', None, 400, "invalid_request"),
    (
        "POST",
        "/sessions/{live}/instances/node1/exec",
        '{"command": [1]}',
        None,
        400,
        "invalid_request",
    ),
    (
        "POST",
        "/sessions/{ended}/instances/node1/exec",
        '{"command": ["ls"]}',
        None,
        404,
        "session_not_found",
    ),
    (
        "POST",
        "/sessions/{live}/instances/node1/uploads?url=http://169.254.169.254/latest/x&path=",
        "",
        None,
        400,
        "url_not_allowed",
    ),
    (
        "POST",
        "/sessions/{live}/instances/node1/uploads?url=file:///etc/passwd&path=/",
        "",
        None,
        400,
        "url_not_allowed",
    ),
    (
        "POST",
        "/sessions/{ended}/instances/node1/uploads?url=&path=",
        "",
        None,
        404,
        "session_not_found",
    ),
    ("POST", "/sessions/{live}/setup", '{"instances": "node1"}', None, 400, "invalid_request"),
    (
        "POST",
        "/sessions/{live}/setup",
        '{"instances": [{"run": "ls"}]}',
        None,
        400,
        "invalid_request",
    ),
    ("POST", "/sessions/{ended}/setup", '{"instances": [{}]}', None, 500, "session_not_found"),
    ("GET", "/sessions/{live}/close", None, None, 405, "method_not_allowed"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "origin", "status", "code"),
    COMPAT_CASES,
    ids=[f"{c[0]} {c[1][:50]} {str(c[2])[:30]} {c[3]}" for c in COMPAT_CASES],
)
async def test_a_bad_compat_request_gets_pwds_status_and_changes_nothing(
    settings, ids, method, path, body, origin, status, code
):
    settings.PWD_EMBED_ORIGINS = [COMPAT_ORIGIN]
    headers = {"Origin": origin} if origin else {}
    kind = FORM if path == "/" else "application/json"
    response = await AsyncClient().generic(
        method, path.format(**ids), body or b"", content_type=kind, headers=headers
    )

    assert response.status_code == status, response.content
    assert error_of(response)["code"] == code
    assert await Session.objects.acount() == 2
    assert await Session.objects.active().filter(pk=ids["live"]).aexists()
    assert not await Node.objects.aexists()
