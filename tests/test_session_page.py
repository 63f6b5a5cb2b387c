"""The landing page and the session page (HTML only; the terminals are tested elsewhere)."""

import pytest
from django.test import Client

from sessions_app.models import Node, Session

pytestmark = pytest.mark.django_db


def test_the_landing_page_offers_to_start():
    response = Client().get("/")
    assert response.status_code == 200
    assert b'id="start"' in response.content
    assert b"js/landing.js" in response.content


def test_the_session_page_lists_nodes_and_loads_xterm():
    session = Session.objects.create()
    Node.objects.create(
        session=session,
        name="node1",
        hostname="node1",
        ip="10.0.0.2",
        status=Node.Status.RUNNING,
        container_id="x",
    )
    Node.objects.create(
        session=session, name="node2", hostname="node2", status=Node.Status.GONE, container_id="y"
    )
    response = Client().get(f"/p/{session.id}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "vendor/xterm/lib/xterm.mjs" in body
    assert "vendor/xterm-addon-fit/lib/addon-fit.mjs" in body
    assert "vendor/xterm/css/xterm.css" in body
    assert '"name": "node1"' in body
    assert '"name": "node2"' not in body
    assert "Ctrl</kbd>+<kbd>Shift</kbd>+<kbd>C" in body


@pytest.mark.parametrize("state", ["unknown", "ended"])
def test_an_unknown_or_ended_session_gets_a_404_page(state):
    session_id = "nope"
    if state == "ended":
        session = Session.objects.create()
        session.end()
        session_id = session.id
    response = Client().get(f"/p/{session_id}/")
    assert response.status_code == 404
    assert b"Start a new session" in response.content


@pytest.mark.parametrize(
    "path",
    [
        "/static/vendor/xterm/lib/xterm.mjs",
        "/static/vendor/xterm/css/xterm.css",
        "/static/vendor/xterm-addon-fit/lib/addon-fit.mjs",
        "/static/js/session.js",
        "/static/js/landing.js",
        "/static/css/pwd.css",
    ],
)
def test_the_front_end_assets_are_served(path, live_server):
    import urllib.request

    with urllib.request.urlopen(live_server.url + path) as response:
        assert response.status == 200
