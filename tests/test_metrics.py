"""/metrics on a real server and engine: the series after a session, a node, open
websockets, a reaper pass, a keeper pass and an engine error in another process; the
allow list; and /api/capacity/ following a node's add."""

import os
import time

import pytest
from django.contrib.auth.models import User
from django.test import AsyncClient
from prometheus_client.parser import text_string_to_metric_families

from metrics import access, tally
from metrics.models import Count
from pwd_site.testing import run_python
from sessions_app import engine as engine_package
from tests.api_helpers import ClientAt, error_of
from tests.fault_helpers import WsTerminal
from tests.live_server import live_server

pytestmark = pytest.mark.django_db(transaction=True)

# A node start that the engine refuses, in a process of its own (as the keeper's would).
FAILED_START = """
from sessions_app import engine
try:
    engine.create_node(None, "broken", "no-such-image:never", wait=False)
except engine.NodeStartError as exc:
    print("refused:", exc)
"""


def _scrape(server) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted labels: value}} of one /metrics answer."""
    status, text = server.request("GET", "/metrics")
    assert status == 200, text
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def _until(server, ready, within: float = 30.0) -> dict[str, dict[tuple, float]]:
    """Scrape until ``ready(samples)`` (counts from other processes arrive within seconds)."""
    deadline = time.monotonic() + within
    while True:
        samples = _scrape(server)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.5)


def _one(samples, name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


def _passes(samples, what: str) -> float:
    return sum(_one(samples, f"pwd_{what}_passes_total", outcome=o) for o in ("ok", "failed"))


def test_metrics_exposes_sessions_nodes_sockets_passes_and_errors(tmp_path, engine):
    # No warm pool and no hot sessions: the keeper's passes make no nodes of their own.
    with live_server(tmp_path, PWD_POOL_SIZE="0", PWD_POOL_SESSIONS="0") as server:
        before = _scrape(server)
        assert _one(before, "pwd_sessions_active") == 0
        assert _one(before, "pwd_add_node_seconds_count", host="local") == 0

        status, session = server.request("POST", "/api/sessions/")
        assert status == 201, session
        status, node = server.request("POST", f"/api/sessions/{session['id']}/nodes/")
        assert status == 201, node
        events = WsTerminal(server, f"/ws/sessions/{session['id']}/events/")
        terminal = WsTerminal(server, node["terminal"])
        try:
            terminal.connected()
            reaped = server.manage("reap", "--once")
            assert reaped.returncode == 0, reaped.stderr
            failed = server.python(FAILED_START)
            assert "refused:" in failed.stdout, failed.stderr
            keeper = server.spawn("pool", ["manage.py", "pool"])
            samples = _until(
                server,
                lambda s: (
                    _passes(s, "keeper") >= 1
                    and _one(s, "pwd_engine_errors_total", host="local", kind="node_start") >= 1
                ),
            )
            keeper.stop()
            sockets = {
                kind: _one(samples, "pwd_websockets_open", kind=kind)
                for kind in ("terminal", "events", "compat")
            }
        finally:
            events.close()
            terminal.close()

        assert _one(samples, "pwd_sessions_active") == 1
        assert _one(samples, "pwd_sessions_limit") == 100
        assert _one(samples, "pwd_nodes", host="local", status="running") == 1
        assert _one(samples, "pwd_nodes", host="local", status="starting") == 0
        assert _one(samples, "pwd_nodes_limit") == 100
        assert _one(samples, "pwd_pool_nodes", host="local", status="ready") == 0
        assert _one(samples, "pwd_add_node_seconds_count", host="local") == 1
        assert _one(samples, "pwd_add_node_seconds_bucket", host="local", le="+Inf") == 1
        assert 0 < _one(samples, "pwd_add_node_seconds_sum", host="local") < 120
        assert sockets == {"terminal": 1, "events": 1, "compat": 0}
        assert _one(samples, "pwd_reaper_passes_total", outcome="ok") == 1
        assert _one(samples, "pwd_reaper_passes_total", outcome="failed") == 0
        assert _one(samples, "pwd_reaper_pass_errors_total") == 0
        reaped_at = _one(samples, "pwd_reaper_last_pass_timestamp_seconds", outcome="ok")
        assert time.time() - 600 < reaped_at <= time.time()
        # Whatever the pass's outcome: the keeper in this tree may be mid-change elsewhere.
        assert _passes(samples, "keeper") >= 1
        assert _one(samples, "pwd_engine_errors_total", host="local", kind="node_start") == 1
        assert _one(samples, "pwd_engine_errors_total", host="local", kind="unavailable") == 0
        assert _one(samples, "pwd_capacity_nodes_free") >= 0
        assert _one(samples, "pwd_host_memory_available_bytes", host="local") > 0

        # Closed sockets leave the gauge once their consumers end.
        closed = _until(
            server,
            lambda s: (
                _one(s, "pwd_websockets_open", kind="terminal") == 0
                and _one(s, "pwd_websockets_open", kind="events") == 0
            ),
        )
        assert _one(closed, "pwd_websockets_open", kind="terminal") == 0
        assert _one(closed, "pwd_websockets_open", kind="events") == 0


def test_metrics_and_capacity_are_refused_from_addresses_not_allowed(tmp_path):
    with live_server(tmp_path, PWD_POOL_SIZE="0", PWD_METRICS_ALLOW="10.0.0.0/8,::1") as server:
        status, body = server.request("GET", "/metrics")
        capacity_status, capacity_body = server.request("GET", "/api/capacity/")

    assert status == 403
    assert body["error"]["code"] == "forbidden"
    assert "PWD_METRICS_ALLOW" in body["error"]["message"]
    assert capacity_status == 403
    assert capacity_body["error"]["code"] == "forbidden"


def test_a_bad_allow_list_stops_the_process_with_its_name(tmp_path):

    checked = run_python(["manage.py", "check"], {**os.environ, "PWD_METRICS_ALLOW": "everyone"})

    assert checked.returncode != 0
    assert "PWD_METRICS_ALLOW" in checked.stderr


def test_capacity_follows_a_node_add(tmp_path, engine):
    with live_server(tmp_path, PWD_POOL_SIZE="0", PWD_MAX_TOTAL_NODES="6") as server:
        status, before = server.request("GET", "/api/capacity/?nodes_per_seat=2")
        assert status == 200, before
        status, session = server.request("POST", "/api/sessions/")
        assert status == 201, session
        status, node = server.request("POST", f"/api/sessions/{session['id']}/nodes/")
        assert status == 201, node
        status, after = server.request("GET", "/api/capacity/?nodes_per_seat=2")
        assert status == 200, after

    assert before["nodes"]["used"] == 0
    assert before["sessions"]["active"] == 0
    assert after["nodes"]["used"] == 1
    assert after["nodes"]["by_status"] == {"running": 1}
    assert after["sessions"] == {"active": 1, "free": 99, "limit": 100}
    [host] = after["hosts"]
    assert host["name"] == "local"
    assert host["nodes"] == 1
    assert after["nodes"]["free"] == min(6 - 1, host["nodes_that_fit"])
    assert after["seats"] == {"nodes_per_seat": 2, "fit": after["nodes"]["free"] // 2}
    # The cap binds while the host's memory holds more than the cap leaves.
    if host["nodes_that_fit"] >= 6:
        assert before["nodes"]["free"] == 6
        assert after["nodes"]["free"] == 5
        assert after["nodes"]["bound"] == "nodes"


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
async def test_a_bad_nodes_per_seat_is_400(value, settings):
    settings.PWD_MAX_NODES = 5

    response = await AsyncClient().get(f"/api/capacity/?nodes_per_seat={value}")

    assert response.status_code == 400
    assert error_of(response)["code"] in {"bad_nodes_per_seat", "invalid_request"}


async def test_more_nodes_per_seat_than_a_session_may_have_fit_no_seat(settings):
    settings.PWD_MAX_NODES = 5

    response = await AsyncClient().get("/api/capacity/?nodes_per_seat=6")

    assert response.status_code == 200
    assert response.json()["seats"]["nodes_per_seat"] == 6
    assert response.json()["seats"]["fit"] == 0


async def test_a_staff_user_sees_capacity_from_any_address(settings, engine):
    settings.PWD_METRICS_ALLOW = ["10.0.0.0/8"]
    staff = await User.objects.acreate_user("operator", password="pw", is_staff=True)
    plain = await User.objects.acreate_user("trainer", password="pw")
    client = ClientAt("127.0.0.1")
    anonymous = await client.get("/api/capacity/")
    await client.aforce_login(plain)
    not_staff = await client.get("/api/capacity/")
    await client.aforce_login(staff)
    seen = await client.get("/api/capacity/")
    metrics = await client.get("/metrics")

    assert anonymous.status_code == 403
    assert not_staff.status_code == 403
    assert seen.status_code == 200
    assert seen.json()["hosts"][0]["name"] == "local"
    # /metrics goes by address alone: scrapers have no login.
    assert metrics.status_code == 403


async def test_the_admin_shows_capacity_to_staff_and_links_it(engine):
    staff = await User.objects.acreate_user("operator", password="pw", is_staff=True)
    client = AsyncClient()
    refused = await client.get("/admin/capacity/")
    await client.aforce_login(staff)
    page = await client.get("/admin/capacity/")
    index = await client.get("/admin/")

    assert refused.status_code == 302
    assert "/admin/login/" in refused["Location"]
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="seats-fit"' in html
    assert "PWD_MAX_TOTAL_NODES" in html
    assert "local" in html
    assert 'href="/admin/capacity/"' in index.content.decode()


@pytest.mark.parametrize(
    ("address", "allowed"),
    [("127.0.0.1", True), ("::1", True), ("::ffff:127.0.0.1", True), ("10.1.2.3", False)],
)
def test_the_allow_list_reads_the_clients_address(rf, address, allowed, settings):
    settings.PWD_METRICS_ALLOW = ["127.0.0.0/8", "::1"]
    request = rf.get("/metrics", REMOTE_ADDR=address)

    assert access.address_allowed(request) is allowed


def test_behind_a_trusted_proxy_the_forwarded_address_counts(rf, settings):
    settings.PWD_METRICS_ALLOW = ["127.0.0.0/8"]
    settings.PWD_TRUSTED_PROXIES = ["127.0.0.1"]
    request = rf.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")

    assert access.address_allowed(request) is False


@pytest.fixture
def no_earlier_counts():
    """What earlier tests of this process recorded, written and then cleared."""
    assert tally.flush()
    Count.objects.all().delete()


def test_counts_recorded_anywhere_are_summed_into_one_row_per_series(no_earlier_counts):
    tally.add("test_only", 2, "local", "x")
    tally.add("test_only", 3, "local", "x")
    tally.add("test_only", 1, "local", "y")
    assert tally.flush()
    tally.add("test_only", 4, "local", "x")
    assert tally.flush()

    rows = dict(Count.objects.filter(name="test_only").values_list("label", "value"))
    assert rows == {"x": 9, "y": 1}


def test_engine_errors_are_counted_as_the_engine_makes_them_but_a_gone_node_is_not(
    no_earlier_counts,
):
    engine_package.NodeStartError("the node could not start")
    engine_package.EngineUnavailable("the Docker engine does not answer")
    engine_package.EngineError("the Docker engine refused")
    engine_package.EngineError("the Docker engine refused again")
    engine_package.NodeGone()
    assert tally.flush()

    rows = dict(Count.objects.filter(name=tally.ENGINE_ERRORS).values_list("label", "value"))
    assert rows == {"node_start": 1, "unavailable": 1, "refused": 2}


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [(0.01, "0.25"), (0.25, "0.25"), (0.26, "0.5"), (7, "10.0"), (120, "120.0"), (121, "+Inf")],
)
def test_an_add_falls_in_the_smallest_bucket_it_does_not_pass(seconds, bucket):
    assert tally.bucket_label(seconds) == bucket


async def test_metrics_answers_get_alone():
    response = await AsyncClient(enforce_csrf_checks=True).post("/metrics")

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert error_of(response)["code"] == "method_not_allowed"
