"""Abuse controls: the per-address session rate, the installation's caps on sessions and
nodes (429 with Retry-After, an "at capacity" page for browsers), and whose address
counts behind a proxy."""

import asyncio

import pytest
from django.test import AsyncClient, RequestFactory

from sessions_app import engine, quotas
from sessions_app.models import Node, Session
from tests.api_helpers import ClientAt, add_node, error_of, post
from tests.live_server import live_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def no_network(monkeypatch):
    """Sessions without an overlay network: these tests are about admission only."""
    monkeypatch.setattr(
        engine, "create_session_network", lambda session_id: (f"net-{session_id}", "id")
    )


def _from(address: str) -> AsyncClient:
    return ClientAt(address)


async def test_a_class_of_thirty_behind_one_nat_starts_at_once(no_network):
    client = _from("198.51.100.7")

    responses = await asyncio.gather(*(post(client, "/api/sessions/") for _ in range(30)))

    assert [r.status_code for r in responses] == [201] * 30


async def test_past_the_rate_an_address_gets_429_with_retry_after_and_others_do_not(
    no_network, settings
):
    settings.PWD_SESSIONS_PER_IP = (3, 3600)
    client = _from("198.51.100.7")
    for _ in range(3):
        assert (await post(client, "/api/sessions/")).status_code == 201

    refused = await post(client, "/api/sessions/")
    other = await post(_from("198.51.100.8"), "/api/sessions/")

    assert refused.status_code == 429
    assert error_of(refused)["code"] == "rate_limited"
    assert 3500 <= int(refused["Retry-After"]) <= 3600
    assert other.status_code == 201
    assert await Session.objects.acount() == 4


async def test_ipv6_clients_are_counted_per_64(no_network, settings):
    settings.PWD_SESSIONS_PER_IP = (1, 3600)
    assert (await post(_from("2001:db8:1:2::1"), "/api/sessions/")).status_code == 201

    same_64 = await post(_from("2001:db8:1:2::ffff"), "/api/sessions/")
    other_64 = await post(_from("2001:db8:1:3::1"), "/api/sessions/")

    assert same_64.status_code == 429
    assert other_64.status_code == 201


async def test_at_max_sessions_the_api_answers_429_at_capacity(no_network, settings):
    settings.PWD_MAX_SESSIONS = 2
    for address in ("198.51.100.1", "198.51.100.2"):
        assert (await post(_from(address), "/api/sessions/")).status_code == 201

    refused = await post(_from("198.51.100.3"), "/api/sessions/")

    assert refused.status_code == 429
    assert error_of(refused)["code"] == "at_capacity"
    assert int(refused["Retry-After"]) > 0
    assert await Session.objects.acount() == 2


async def test_at_capacity_the_start_form_shows_a_page_saying_so(no_network, settings):
    settings.PWD_MAX_SESSIONS = 1
    client = _from("198.51.100.1")
    started = await client.post("/start/")
    refused = await client.post("/start/", headers={"Accept": "text/html"})

    assert started.status_code == 302
    assert started["Location"].startswith("/p/")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert refused["Content-Type"].startswith("text/html")
    assert b"At capacity" in refused.content


async def test_at_max_total_nodes_adding_a_node_is_429_and_starts_nothing(
    no_network, settings, monkeypatch
):
    settings.PWD_MAX_TOTAL_NODES = 1
    other = await Session.objects.acreate()
    await Node.objects.acreate(
        session=other, name="node1", hostname="node1", status=Node.Status.RUNNING
    )
    session = (await post(_from("198.51.100.1"), "/api/sessions/")).json()

    async def must_not_start(*args, **kwargs):
        raise AssertionError("a node was started past the cap")

    monkeypatch.setattr("sessions_app.services.acquire_node", must_not_start)
    refused = await add_node(AsyncClient(), session["id"])

    assert refused.status_code == 429
    assert error_of(refused)["code"] == "at_capacity"
    assert "Retry-After" in refused
    assert await Node.objects.filter(session_id=session["id"]).acount() == 0


def _request(peer: str, forwarded: str | None = None):
    headers = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    return RequestFactory().get("/", REMOTE_ADDR=peer, **headers)


def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(settings):
    settings.PWD_TRUSTED_PROXIES = []
    assert quotas.client_address(_request("203.0.113.9", "1.2.3.4")) == "203.0.113.9"
    settings.PWD_TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert quotas.client_address(_request("203.0.113.9", "1.2.3.4")) == "203.0.113.9"


def test_behind_trusted_proxies_the_client_is_the_first_untrusted_hop_from_the_right(settings):
    settings.PWD_TRUSTED_PROXIES = ["10.0.0.0/8", "127.0.0.1"]
    # The client wrote "6.6.6.6" itself; the proxies appended 198.51.100.4 and 10.1.2.3.
    request = _request("127.0.0.1", "6.6.6.6, 198.51.100.4, 10.1.2.3")

    assert quotas.client_address(request) == "198.51.100.4"
    assert quotas.client_address(_request("10.0.0.1", "garbage")) == "10.0.0.1"


def test_client_keys_do_not_hold_the_address(settings):
    key = quotas.client_key("198.51.100.7")

    assert key
    assert "198" not in key
    assert key == quotas.client_key("198.51.100.7")
    assert key != quotas.client_key("198.51.100.8")
    assert quotas.client_key("") == ""


@pytest.mark.docker
def test_the_rate_holds_across_two_server_processes(engine, tmp_path):
    """Two daphne processes on one database: the count is in the database, not in memory."""
    limit = {"PWD_SESSIONS_PER_IP": "2/h", "PWD_POOL_SIZE": "0"}
    with live_server(tmp_path, **limit) as first:
        created = [first.request("POST", "/api/sessions/") for _ in range(2)]
        (tmp_path / "second").mkdir()
        same_db = first.env["DATABASE_URL"]
        with live_server(tmp_path / "second", DATABASE_URL=same_db, **limit) as second:
            status, body = second.request("POST", "/api/sessions/")
        for _, session in created:
            first.request("DELETE", f"/api/sessions/{session['id']}/")

    assert [code for code, _ in created] == [201, 201]
    assert status == 429
    assert body["error"]["code"] == "rate_limited"
