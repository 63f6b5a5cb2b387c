"""The embed's server side without a browser: who may start embedded sessions, the
per-origin budgets, who may frame the embed routes, which websockets a listed origin may
open, and the demo lesson's rendering (the browser tests: tests/test_embed_browser.py)."""

import json
import re
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from pwd_site.origin import OriginCheck
from sessions_app import quotas
from sessions_app.errors import TooManyRequests
from sessions_app.models import Node, Session
from tests.live_server import live_server

pytestmark = pytest.mark.django_db(transaction=True)

DOCS = "https://docs.example.org"
SESSION_ID = "A" * 22


def _policy(response) -> dict[str, str]:
    directives = (d.strip().split(" ", 1) for d in response["Content-Security-Policy"].split(";"))
    return {d[0]: d[1] if len(d) > 1 else "" for d in directives}


def test_the_iframe_route_may_be_framed_by_the_embed_origins_only(settings):
    settings.PWD_EMBED_ORIGINS = [DOCS]
    response = Client().get("/embed/?node=node1")

    assert response.status_code == 200
    assert "X-Frame-Options" not in response
    assert _policy(response)["frame-ancestors"] == f"'self' {DOCS}"
    assert 'data-pwd-term="node1"' in response.content.decode()


@pytest.mark.parametrize("path", ["/", "/docs/try/", "/healthz", "/static/pwd/embed.js"])
def test_every_other_page_still_refuses_to_be_framed(settings, path):
    settings.PWD_EMBED_ORIGINS = [DOCS]
    response = Client().get(path)

    assert response.status_code == 200
    assert response["X-Frame-Options"] == "DENY"
    assert _policy(response)["frame-ancestors"] == "'none'"


def test_the_lesson_is_rendered_markdown_with_runnable_blocks_and_the_script():
    html = Client().get("/docs/try/", HTTP_HOST="127.0.0.1:8000").content.decode()

    assert "<h1>Try Docker in your browser</h1>" in html
    assert len(re.findall(r'<pre><code class="language-pwd-node1">', html)) >= 3
    assert '<div data-pwd-term="node1"></div>' in html
    assert '<script type="module" src="http://127.0.0.1:8000/static/pwd/embed.js">' in html


def test_the_embed_script_and_xterm_load_from_any_origin():
    for path in ("/static/pwd/embed.js", "/static/vendor/xterm/css/xterm.css"):
        response = Client().get(path, HTTP_ORIGIN="https://anywhere.example")
        assert response.status_code == 200, path
        assert response["Access-Control-Allow-Origin"] == "*", path


@pytest.mark.parametrize(
    ("origin", "status"),
    [(DOCS, 204), (DOCS + "/", 204), ("https://evil-docs.example.org", 403), (None, 403)],
)
def test_only_a_listed_origin_gets_the_preflight(settings, origin, status):
    settings.PWD_EMBED_ORIGINS = [DOCS]
    headers = {"HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST"}
    if origin:
        headers["HTTP_ORIGIN"] = origin
    response = Client().options("/embed/sessions/", **headers)

    assert response.status_code == status
    if status == 204:
        assert response["Access-Control-Allow-Origin"] == origin
        assert "content-type" in response["Access-Control-Allow-Headers"].lower()


@pytest.mark.parametrize(
    "origin", ["https://sub.docs.example.org", "https://docs.example.org.evil.com", "null"]
)
def test_an_embed_on_a_lookalike_origin_is_refused_and_starts_nothing(settings, origin):
    settings.PWD_EMBED_ORIGINS = [DOCS]
    response = Client().post(
        "/embed/sessions/", "{}", content_type="application/json", HTTP_ORIGIN=origin
    )

    assert response.status_code == 403
    assert json.loads(response.content)["error"]["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in response
    assert not Session.objects.exists()


def test_the_api_answers_a_listed_embed_origin_with_cors(settings):
    settings.PWD_EMBED_ORIGINS = [DOCS]
    settings.CORS_ALLOWED_ORIGINS = [DOCS]
    session = Session.objects.create()
    response = Client().get(f"/api/sessions/{session.id}/", HTTP_ORIGIN=DOCS)

    assert response["Access-Control-Allow-Origin"] == DOCS


def test_an_embed_key_is_per_origin_and_address_and_never_a_plain_key():
    one = quotas.embed_key(DOCS, "203.0.113.5")

    assert len(one) == 32
    assert one.startswith(quotas.origin_prefix(DOCS))
    assert one != quotas.embed_key(DOCS, "203.0.113.6")
    assert one != quotas.embed_key("https://other.example", "203.0.113.5")
    assert quotas.embed_key(DOCS + "/", "203.0.113.5") == one
    assert not quotas.client_key("203.0.113.5").startswith(quotas.EMBED_MARK)


def test_one_origin_cannot_take_more_than_its_sessions(settings):
    settings.PWD_EMBED_SESSIONS_PER_ORIGIN = 3
    now = timezone.now()
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        Session.objects.create(client_key=quotas.embed_key(DOCS, address))

    with pytest.raises(TooManyRequests) as refused:
        quotas.check_new_session(quotas.embed_key(DOCS, "10.0.0.4"), now)

    assert refused.value.code == "origin_limit"
    quotas.check_new_session(quotas.embed_key("https://other.example", "10.0.0.4"), now)
    quotas.check_new_session(quotas.client_key("10.0.0.4"), now)


def test_a_class_behind_one_nat_gets_the_embed_rate_not_the_address_rate(settings):
    settings.PWD_SESSIONS_PER_IP = (2, 3600)
    settings.PWD_EMBED_SESSIONS_PER_IP = (5, 3600)
    now = timezone.now()
    key = quotas.embed_key(DOCS, "198.51.100.7")
    for _ in range(4):
        Session.objects.create(client_key=key, created_at=now - timedelta(seconds=5))

    quotas.check_new_session(key, now)
    Session.objects.create(client_key=key, created_at=now - timedelta(seconds=5))
    with pytest.raises(TooManyRequests) as refused:
        quotas.check_new_session(key, now)
    assert refused.value.code == "rate_limited"


def test_one_origin_cannot_take_more_than_its_nodes(settings):
    settings.PWD_EMBED_NODES_PER_ORIGIN = 2
    for address in ("10.0.0.1", "10.0.0.2"):
        session = Session.objects.create(client_key=quotas.embed_key(DOCS, address))
        Node.objects.create(session=session, name="node1", hostname="node1", status="running")
    gone = Session.objects.create(client_key=quotas.embed_key(DOCS, "10.0.0.3"))
    Node.objects.create(session=gone, name="node1", hostname="node1", status="gone")

    with pytest.raises(TooManyRequests) as refused:
        quotas.check_new_node(quotas.embed_key(DOCS, "10.0.0.3"))

    assert refused.value.code == "origin_limit"
    quotas.check_new_node(quotas.embed_key("https://other.example", "10.0.0.3"))


async def _accept(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})


@pytest.mark.parametrize(
    ("path", "origin", "allowed"),
    [
        (f"/ws/sessions/{SESSION_ID}/nodes/node1/terminal/", DOCS, True),
        (f"/ws/sessions/{SESSION_ID}/nodes/node1/terminal/", "https://evil.example", False),
        (f"/ws/sessions/{SESSION_ID}/nodes/node1/terminal/", DOCS + ".evil.com", False),
        (f"/ws/sessions/{SESSION_ID}/events/", DOCS, False),
        (f"/ws/sessions/{SESSION_ID}/nodes/node1/terminal/x/", DOCS, False),
    ],
)
async def test_a_listed_embed_origin_opens_terminal_websockets_only(
    settings, path, origin, allowed
):
    settings.PWD_EMBED_ORIGINS = [DOCS]
    headers = [(b"host", b"127.0.0.1:8000"), (b"origin", origin.encode())]
    client = WebsocketCommunicator(OriginCheck(_accept), path, headers=headers)
    connected, _ = await client.connect()

    assert connected is allowed
    await client.disconnect()


def _post(url: str, origin: str) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=b"{}", method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Origin", origin)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


@pytest.mark.docker
def test_an_origin_past_its_budget_gets_429_origin_limit_and_others_still_start(engine, tmp_path):
    other = "https://other.example"
    with live_server(
        tmp_path,
        PWD_EMBED_ORIGINS=f"{DOCS},{other}",
        PWD_EMBED_SESSIONS_PER_ORIGIN="1",
        PWD_POOL_SIZE="0",
    ) as pwd:
        status, first, headers = _post(pwd.url + "/embed/sessions/", DOCS)
        assert status == 201, first
        assert headers["Access-Control-Allow-Origin"] == DOCS
        assert set(first) >= {"id", "expires_at", "nodes"}

        status, refused, headers = _post(pwd.url + "/embed/sessions/", DOCS)
        assert (status, refused["error"]["code"]) == (429, "origin_limit")
        assert int(headers["Retry-After"]) > 0

        status, second, _ = _post(pwd.url + "/embed/sessions/", other)
        assert status == 201, second
        for made in (first, second):
            assert pwd.request("DELETE", f"/api/sessions/{made['id']}/")[0] == 204
