"""The web-layer escapes of issue 10 stay closed: huge bodies are refused before they are
read (M4), a lone surrogate or deep JSON gets an error, never a crash (L2, L3), the
websocket handshake checks Host and the Origin's scheme (L4), session ids stay out of the
logs in any path form (L6), and every answer carries the security headers (L7).

Most cases run against a real daphne (``python -m pwd_site.serve``) on loopback; the
terminal cases drive a real node's terminal as the browser does.
"""

import asyncio
import base64
import http.client
import json
import os
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client

from pwd_site.bodylimit import BodyLimit
from pwd_site.redact import redact
from pwd_site.routing import websocket_application
from sessions_app import events
from sessions_app.models import Session
from tests.live_server import LiveServer, live_server
from tests.test_terminal_consumer import _open, container, node  # noqa: F401 - fixtures

MiB = 1024 * 1024
HUGE = 512 * MiB
SESSION_ID = "AbCdEf0123456789_-abcdefghijklmn"
TRUSTED = "https://docs.example.org"
DEEP_JSON = b"[" * 30_000


@pytest.fixture(scope="module")
def server(tmp_path_factory, _run_instance) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("escapes-web")
    with live_server(tmp, PWD_POOL_SIZE="0", PWD_TRUSTED_ORIGINS=TRUSTED) as live:
        yield live


def _port(server: LiveServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _server_pid(server: LiveServer) -> int:
    """The daphne process of ``server`` (found by its command line and port)."""
    port = str(_port(server)).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:3] == [b"-m", b"pwd_site.serve"] and port in argv:
            return int(entry.name)
    raise AssertionError(f"no pwd_site.serve process on port {port.decode()}")


def _memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak) of ``pid``, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in {"VmRSS", "VmHWM"}:
            fields[name] = int(value.split()[0]) * 1024
    return fields


def _reset_peak(pid: int) -> None:
    # "5" resets VmHWM to the current RSS (Linux 4.0+), so the peak measures this test.
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _connect(server: LiveServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", _port(server)), timeout=30)


def _get(server: LiveServer, path: str, method: str = "GET", **headers: str):
    connection = http.client.HTTPConnection("127.0.0.1", _port(server), timeout=30)
    connection.request(method, path, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def _read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of an HTTP answer whose connection then closes."""
    data = b""
    for _ in range(1000):
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def _post_head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *headers]
    return "\r\n".join([*lines, "Content-Type: application/json", "", ""]).encode()


def _megabytes(count: int) -> Iterator[bytes]:
    piece = b" " * MiB
    for _ in range(count):
        yield piece


def _stream_until_answered(sock: socket.socket, body: Iterator[bytes]) -> int:
    """Send ``body`` as chunked transfer encoding, a piece at a time, until the server
    answers (or the body ends). Returns how many body bytes went out."""
    sent = 0
    deadline = time.monotonic() + 120
    for piece in body:
        sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sent += len(piece)
        answered, _, _ = select.select([sock], [], [], 0)
        if answered or time.monotonic() > deadline:
            break
    return sent


def _error(body: bytes) -> dict[str, str]:
    document = json.loads(body)
    assert set(document) == {"error"}, document
    assert set(document["error"]) == {"code", "message"}, document
    return document["error"]


# --- M4: a huge body is refused before it is read ------------------------------------


def test_a_huge_content_length_gets_413_before_any_of_the_body_is_sent(server):
    pid = _server_pid(server)
    before = _memory(pid)
    _reset_peak(pid)
    with _connect(server) as sock:
        sock.sendall(_post_head("/api/sessions/", f"Content-Length: {HUGE}"))
        status, headers, body = _read_answer(sock)
    after = _memory(pid)

    assert status == 413
    assert _error(body)["code"] == "body_too_large"
    assert headers["x-frame-options"] == "DENY"
    assert after["VmHWM"] - before["VmRSS"] < 64 * MiB, (before, after)


def test_a_huge_streamed_body_gets_413_while_most_of_it_is_unsent(server):
    pid = _server_pid(server)
    before = _memory(pid)
    _reset_peak(pid)
    with _connect(server) as sock:
        sock.sendall(_post_head("/api/sessions/", "Transfer-Encoding: chunked"))
        sent = _stream_until_answered(sock, _megabytes(HUGE // MiB))
        status, _, body = _read_answer(sock)
    after = _memory(pid)

    assert status == 413
    assert _error(body)["code"] == "body_too_large"
    assert sent < 64 * MiB, f"{sent // MiB} MiB went out before the answer"
    assert after["VmHWM"] - before["VmRSS"] < 64 * MiB, (before, after)


def test_the_server_still_answers_on_a_new_connection_after_a_refusal(server):
    with _connect(server) as sock:
        sock.sendall(_post_head("/api/sessions/", f"Content-Length: {HUGE}"))
        assert _read_answer(sock)[0] == 413

    assert server.request("GET", "/healthz") == (200, {"ok": True})


async def _app_reading_everything(scope, receive, send) -> None:
    """An ASGI app that reads its whole body, as Django's handler does, then answers."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"read it all"})


async def _call_asgi(app, headers: list[tuple[bytes, bytes]], pieces: int) -> tuple[list, int]:
    """Run ``app`` on a POST of ``pieces`` MiB; returns what it sent and MiB it took in."""
    given = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal given
        given += 1
        return {"type": "http.request", "body": b" " * MiB, "more_body": given < pieces}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/sessions/", "headers": headers}
    await app(scope, receive, send)
    return sent, given


async def test_the_asgi_guard_refuses_a_declared_huge_body_without_reading_any(settings):
    settings.PWD_MAX_BODY = MiB
    sent, given = await _call_asgi(
        BodyLimit(_app_reading_everything), [(b"content-length", str(HUGE).encode())], 512
    )

    assert given == 0
    assert sent[0]["status"] == 413
    assert _error(sent[1]["body"])["code"] == "body_too_large"


async def test_the_asgi_guard_stops_a_streamed_body_at_the_limit(settings):
    settings.PWD_MAX_BODY = MiB
    sent, given = await _call_asgi(BodyLimit(_app_reading_everything), [], 512)

    assert given == 2
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [413]
    assert _error(sent[-1]["body"])["code"] == "body_too_large"


async def test_the_asgi_guard_passes_a_body_under_the_limit_on(settings):
    settings.PWD_MAX_BODY = 4 * MiB
    sent, given = await _call_asgi(BodyLimit(_app_reading_everything), [], 3)

    assert given == 3
    assert sent[1]["body"] == b"read it all"


# --- L3: deep JSON is a 400 ----------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_deeply_nested_json_is_a_400_and_creates_nothing(server, framing):
    with _connect(server) as sock:
        if framing == "chunked":
            sock.sendall(_post_head("/api/sessions/", "Transfer-Encoding: chunked"))
            _stream_until_answered(sock, iter([DEEP_JSON]))
            sock.sendall(b"0\r\n\r\n")
        else:
            head = _post_head("/api/sessions/", f"Content-Length: {len(DEEP_JSON)}")
            sock.sendall(head + DEEP_JSON)
        status, _, body = _read_answer(sock)
    count = server.python("from sessions_app.models import Session\nprint(Session.objects.count())")

    assert status == 400
    assert _error(body)["code"] == "invalid_json"
    assert count.stdout.strip() == "0", count.stderr


# --- L2 (and L3): a lone surrogate or deep JSON never ends a websocket ---------------


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('{"type": "input", "data": "\\ud800"}', "invalid_input"),
        ('{"type": "input", "data": "ok\\udfffok"}', "invalid_input"),
        ('{"type": "input", "data": "\\udc80"}', "invalid_input"),
        ("[" * 30_000, "invalid_json"),
    ],
    ids=["lone-high-surrogate", "lone-low-surrogate", "escape-range-surrogate", "deep-json"],
)
async def test_a_lone_surrogate_or_deep_json_gets_an_error_and_the_shell_goes_on(
    node,  # noqa: F811 - the fixture
    frame,
    code,
):
    terminal = await _open(node)
    await terminal.comm.send_to(text_data=frame)
    await terminal.until(lambda t: t.errors())
    await terminal.type("echo still-$((2+3))\r")
    await terminal.until_text("still-5\r\n")

    assert [e["code"] for e in terminal.errors()] == [code]
    assert terminal.closed is None
    await terminal.close()


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
async def test_a_surrogate_pair_is_typed_as_its_character(node):  # noqa: F811
    terminal = await _open(node)
    await terminal.comm.send_to(text_data='{"type": "input", "data": "echo \\ud83d\\ude00-ok\\r"}')
    await terminal.until_text("\U0001f600-ok\r\n")

    assert not terminal.errors()
    await terminal.close()


async def _joined(session_id: str) -> None:
    """Wait (bounded) until a viewer of the session is in its channel-layer group."""
    layer = get_channel_layer()
    for _ in range(200):
        if layer.groups.get(events.group_name(session_id)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the viewer never joined the session's group")


@pytest.mark.django_db(transaction=True)
async def test_the_events_socket_ignores_whatever_a_viewer_sends_and_goes_on(settings):
    # In memory, whatever REDIS_URL says: _joined() looks at the layer's groups.
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    session = await Session.objects.acreate()
    viewer = WebsocketCommunicator(websocket_application, f"/ws/sessions/{session.id}/events/")
    connected, _ = await viewer.connect()
    assert connected
    await _joined(session.id)

    for frame in ({"bytes_data": b"\x00\xff"}, {"text_data": '{"data": "\\ud800"}'}):
        await viewer.send_to(**frame)
    await viewer.send_to(text_data="[" * 30_000)
    await viewer.send_to(text_data="not json")
    for name in ("node2", "node3"):
        await events.publish(session.id, {"type": "node.removed", "name": name})

    assert await viewer.receive_json_from(5) == {"type": "node.removed", "name": "node2"}
    assert await viewer.receive_json_from(5) == {"type": "node.removed", "name": "node3"}
    assert not viewer.future.done()
    await viewer.disconnect()


# --- L4: the handshake checks Host and the Origin's scheme ---------------------------


def _handshake(server: LiveServer, host: str, origin: str | None = None) -> int:
    """The HTTP status a websocket handshake to the events socket gets."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET /ws/sessions/{SESSION_ID}/events/ HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    with _connect(server) as sock:
        sock.sendall(("\r\n".join([*lines, "", ""])).encode())
        status_line = sock.makefile("rb").readline()
    return int(status_line.split()[1])


def test_a_handshake_for_the_apps_own_host_and_origin_is_accepted(server):
    here = f"127.0.0.1:{_port(server)}"

    assert _handshake(server, here) == 101
    assert _handshake(server, here, f"http://{here}") == 101


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1.evil.example:80", "evil.example:1"])
def test_a_handshake_for_a_host_outside_allowed_hosts_is_refused(server, host):
    assert _handshake(server, host) == 403
    assert _handshake(server, host, f"http://{host}") == 403


def test_a_handshake_from_the_apps_host_on_the_other_scheme_is_refused(server):
    here = f"127.0.0.1:{_port(server)}"

    assert _handshake(server, here, f"https://{here}") == 403
    assert _handshake(server, here, f"ws://{here}") == 403


def test_a_listed_origin_may_use_another_scheme(server):
    assert _handshake(server, f"127.0.0.1:{_port(server)}", TRUSTED) == 101


async def _events_handshake(headers: list[tuple[bytes, bytes]]) -> bool:
    viewer = WebsocketCommunicator(
        websocket_application, f"/ws/sessions/{SESSION_ID}/events/", headers=headers
    )
    connected, _ = await viewer.connect()
    await viewer.disconnect()
    return connected


@pytest.mark.django_db(transaction=True)
async def test_behind_a_tls_proxy_the_origin_must_be_https(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proxied = [(b"host", b"pwd.example.org"), (b"x-forwarded-proto", b"https")]
    settings.ALLOWED_HOSTS = ["pwd.example.org"]

    assert await _events_handshake([*proxied, (b"origin", b"https://pwd.example.org")])
    assert not await _events_handshake([*proxied, (b"origin", b"http://pwd.example.org")])
    plain = [(b"host", b"pwd.example.org"), (b"x-forwarded-proto", b"http")]
    assert not await _events_handshake([*plain, (b"origin", b"https://pwd.example.org")])


# --- L6: no session id in the logs, whatever the path looks like ---------------------

ENCODED_ID = "".join(f"%{ord(c):02X}" for c in SESSION_ID)
ODD_PATHS = [
    f"/P/{SESSION_ID}/",
    f"/api/sessions/x/..%2F{SESSION_ID}/",
    f"/api/sessions/x/..%2f{SESSION_ID}/",
    f"//p//{SESSION_ID}//",
    f"/p/{ENCODED_ID}/",
    f"/p/%25{ENCODED_ID[1:]}/",
    f"/p/x{SESSION_ID}/",
    f"/static/..%2Fp%2F{SESSION_ID}",
    f"/p/{SESSION_ID.lower()}/",
    f"/p/{SESSION_ID}?next=/p/{SESSION_ID}/",
]


def _leaks(text: str) -> list[str]:
    """Pieces of the id (or its encoded form) that a redacted text must not hold."""
    pieces = [SESSION_ID[6:], SESSION_ID.lower()[6:], ENCODED_ID[18:]]
    return [p for p in pieces if p.lower() in text.lower()]


@pytest.mark.parametrize("path", ODD_PATHS)
def test_a_session_id_in_an_odd_path_is_cut_to_its_first_characters(path):
    line = f'127.0.0.1:5000 - - [01/Dec/2026:09:00:00] "GET {path}" 404 179'

    assert _leaks(redact(line)) == []
    assert _leaks(redact(f"Not Found: {path}")) == []


def test_paths_without_an_id_are_logged_as_they_came():
    line = '"GET /static/vendor/xterm/lib/xterm.js?v=5.5%2B1 HTTP/1.1" 200 283000'

    assert redact(line) == line


def test_a_live_servers_logs_hold_no_id_from_an_odd_path(server):
    for path in ODD_PATHS:
        _get(server, path)
    log = server.log.read_text()

    assert "GET /P/AbCdEf..." in log
    assert _leaks(log) == []


# --- L7: security headers on every answer, no-store where an id is -------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "headers"),
    [
        ("GET", "/api/nope/", 404, {}),
        ("GET", f"/api/sessions/{SESSION_ID}/", 404, {}),
        ("GET", "/nope/", 404, {}),
        ("GET", "/static/vendor/xterm/lib/xterm.js", 200, {}),
        ("GET", "/static/nope.js", 404, {}),
        ("PUT", "/api/sessions/", 405, {}),
        ("POST", "/api/sessions/", 403, {"Origin": "http://evil.example"}),
        (
            "OPTIONS",
            "/api/sessions/",
            403,
            {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        ),
    ],
    ids=lambda value: str(value)[:40],
)
def test_every_answer_carries_the_security_headers(server, method, path, status, headers):
    response = _get(server, path, method, **headers)

    assert response.status == status
    assert response.getheader("X-Frame-Options") == "DENY"
    assert "frame-ancestors 'none'" in response.getheader("Content-Security-Policy")
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    assert response.getheader("Referrer-Policy") == "same-origin"


def _no_store(response) -> bool:
    directives = {d.strip() for d in response.get("Cache-Control", "").split(",")}
    return "no-store" in directives


@pytest.mark.django_db
def test_the_session_page_and_the_session_api_are_never_stored():
    session = Session.objects.create()
    client = Client()

    assert _no_store(client.get(session.page_path))
    assert _no_store(client.get(f"/api/sessions/{session.id}/"))
    assert _no_store(client.get("/p/unknown/"))
    assert not _no_store(client.get("/static/vendor/xterm/lib/xterm.js"))


def test_a_live_session_page_address_is_never_stored(server):
    assert "no-store" in _get(server, f"/p/{SESSION_ID}/").getheader("Cache-Control")
    assert "no-store" in _get(server, f"/P/{SESSION_ID}/").getheader("Cache-Control")


def test_static_files_keep_their_own_caching(server):
    response = _get(server, "/static/vendor/xterm/lib/xterm.js")

    assert "no-store" not in (response.getheader("Cache-Control") or "")
