"""Web security: headers and CSP, no inline script, frame embedding only where a view
allows it, exact websocket origins, session ids kept out of logs, and production
settings that pass ``manage.py check --deploy``."""

import json
import logging
import os
import re
import secrets
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import websockets.sync.client
from channels.testing import WebsocketCommunicator
from django.http import HttpResponse
from django.test import Client
from django.urls import path

from pwd_site.origin import origin_allowed
from pwd_site.redact import RedactSessionIds, redact
from pwd_site.routing import websocket_application
from pwd_site.security import embeddable
from sessions_app.models import Session
from tests.live_server import live_server

ROOT = Path(__file__).resolve().parent.parent
SESSION_ID = "AbCdEf0123456789_-abcdefghijklmn"


@embeddable
def framed(request):
    return HttpResponse("<p>try it</p>")


urlpatterns = [path("framed/", framed)]


def _policy(response) -> dict[str, str]:
    directives = (
        part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";")
    )
    return dict(directives)


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["landing", "session", "missing"])
def test_pages_carry_the_csp_and_the_security_headers(page):
    paths = {"landing": "/", "missing": "/p/nope/"}
    url = paths.get(page) or Session.objects.create().page_path
    response = Client().get(url)
    policy = _policy(response)

    assert policy["script-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["connect-src"] == "'self' ws://testserver wss://testserver"
    assert policy["object-src"] == "'none'"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.django_db
def test_api_answers_carry_the_headers_too():
    response = Client().get("/api/schema/")

    assert response["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


@pytest.mark.django_db
def test_no_page_has_an_inline_script():
    session = Session.objects.create()
    pages = [Client().get(p).content.decode() for p in ("/", session.page_path, "/p/nope/")]
    templates = [p.read_text() for p in (ROOT / "templates").rglob("*.html")]

    for html in pages + templates:
        for attributes, body in re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S):
            # Data blocks (json_script) are not run; everything else must come from a file.
            assert "src=" in attributes or 'type="application/json"' in attributes, attributes
            assert "src=" not in attributes or not body.strip()
        assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"


@pytest.mark.urls("tests.test_web_security")
def test_an_embeddable_view_may_be_framed_by_trusted_origins_only(settings):
    settings.PWD_TRUSTED_ORIGINS = ["https://docs.example.org"]
    response = Client().get("/framed/")

    assert "X-Frame-Options" not in response
    assert _policy(response)["frame-ancestors"] == "'self' https://docs.example.org"


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil-127.0.0.1:8000",
        "http://127.0.0.1.evil.com",
        "http://127.0.0.1:8000.evil.com",
        "http://127.0.0.1:8001",
        "https://evil.com/http://127.0.0.1:8000",
        "http://user@127.0.0.1:8000",
        "null",
        "file://",
        "",
    ],
)
def test_websocket_origins_must_match_exactly(origin):
    assert not origin_allowed(origin, "127.0.0.1:8000")


def test_the_apps_own_origin_and_listed_origins_are_allowed(settings):
    settings.PWD_TRUSTED_ORIGINS = ["https://docs.example.org"]

    assert origin_allowed("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert origin_allowed("https://docs.example.org", "127.0.0.1:8000")
    assert not origin_allowed("https://sub.docs.example.org", "127.0.0.1:8000")


async def test_a_websocket_from_a_lookalike_origin_is_refused():
    viewer = WebsocketCommunicator(
        websocket_application,
        f"/ws/sessions/{SESSION_ID}/events/",
        headers=[(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1.evil.com")],
    )
    connected, _ = await viewer.connect()

    assert not connected


def test_session_ids_in_paths_are_cut_to_their_first_characters():
    line = (
        f'"GET /p/{SESSION_ID}/ HTTP/1.1" "WSCONNECT /ws/sessions/{SESSION_ID}/nodes/node1/'
        f'terminal/" /api/sessions/{SESSION_ID}/nodes/node1/exec/ /api/sessions/'
    )

    cleaned = redact(line)

    assert SESSION_ID not in cleaned
    assert SESSION_ID[6:12] not in cleaned
    assert f"/p/{SESSION_ID[:6]}.../" in cleaned
    assert f"/ws/sessions/{SESSION_ID[:6]}.../nodes/node1/terminal/" in cleaned
    assert cleaned.endswith("/api/sessions/")


def test_the_log_filter_redacts_formatted_records():
    record = logging.LogRecord(
        "django.request",
        logging.WARNING,
        __file__,
        1,
        "Not Found: %s",
        (f"/p/{SESSION_ID}/",),
        None,
    )

    RedactSessionIds().filter(record)

    assert record.getMessage() == f"Not Found: /p/{SESSION_ID[:6]}.../"


@pytest.mark.django_db(transaction=True)
def test_a_live_servers_logs_hold_no_session_id(tmp_path):
    """daphne's access log and Django's request log, through pwd_site.serve."""
    with live_server(tmp_path, PWD_POOL_SIZE="0") as server:
        for url in (f"/p/{SESSION_ID}/", f"/api/sessions/{SESSION_ID}/"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(server.url + url, timeout=10).close()
            assert refused.value.code == 404
        ws_url = server.url.replace("http", "ws") + f"/ws/sessions/{SESSION_ID}/events/"
        with websockets.sync.client.connect(ws_url, open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "error"
        log = server.log.read_text()

    assert f"/p/{SESSION_ID[:6]}..." in log
    assert "WSCONNECT" in log
    assert SESSION_ID not in log


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("PWD_", "DJANGO"))
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_settings_pass_check_deploy_without_a_warning():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        PWD_PRODUCTION="true",
        PWD_SECRET_KEY=secrets.token_urlsafe(50),
        PWD_ALLOWED_HOSTS="pwd.example.org",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_the_development_key_and_debug():
    no_key = _manage("check", PWD_PRODUCTION="true")
    debug = _manage(
        "check", PWD_PRODUCTION="true", PWD_DEBUG="true", PWD_SECRET_KEY=secrets.token_urlsafe(50)
    )

    assert no_key.returncode != 0
    assert "PWD_SECRET_KEY" in no_key.stderr
    assert debug.returncode != 0
    assert "PWD_DEBUG" in debug.stderr


def test_production_answers_plain_http_with_a_redirect_to_https():
    code = (
        "from django.test import Client\n"
        "c = Client()\n"
        "r = c.get('/', HTTP_HOST='pwd.example.org')\n"
        "s = c.get('/', HTTP_HOST='pwd.example.org', HTTP_X_FORWARDED_PROTO='https')\n"
        "h = c.get('/healthz', HTTP_HOST='pwd.example.org')\n"
        "print(r.status_code, r['Location'], s.status_code, h.status_code,"
        " s['Strict-Transport-Security'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + code],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "pwd_site.settings",
            "PWD_PRODUCTION": "true",
            "PWD_SECRET_KEY": secrets.token_urlsafe(50),
            "PWD_ALLOWED_HOSTS": "pwd.example.org",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    redirect, location, secure, health, hsts = result.stdout.split(" ", 4)
    assert (redirect, location) == ("301", "https://pwd.example.org/")
    assert (secure, health) == ("200", "200")
    assert "max-age=31536000" in hsts
