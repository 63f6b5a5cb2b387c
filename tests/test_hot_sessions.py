"""Hot sessions against the real engine: the keeper holds whole sessions (network, node1,
shell waiting), the landing page's Start hands one out and the keeper refills; a held
session is invisible, never expires, counts against nobody, and goes when it breaks."""

import asyncio
import json
import re
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import AsyncClient
from django.utils import timezone

from sessions_app import hot, quotas
from sessions_app.hot_keeper import HotKeeper
from sessions_app.models import Node, Session
from sessions_app.reaper import Reaper
from tests.api_helpers import ClientAt, add_node, create_session, post, remove_session_objects
from tests.live_server import Instance, LiveServer

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

JSON = {"Accept": "application/json"}


def sh(engine, container_id: str, script: str) -> str:
    result = engine.exec_in_node(container_id, ["sh", "-c", script], timeout=30, max_output=65536)
    assert result.exit_code == 0, result.output
    return result.output.strip()


class OneAtATime(HotKeeper):
    """A keeper holding two hot sessions, making them one by one (the test database is
    an in-memory SQLite, which two writing threads lock for each other), so one
    :meth:`hold` makes both."""

    def __init__(self) -> None:
        super().__init__(size=0, parallelism=1, sessions=2)

    def hold(self, now=None) -> int:
        return super().hold(now) + super().hold(now)


@pytest.fixture
def keeper(engine, settings):
    """A :class:`OneAtATime` keeper with no warm pool; every session the test made is
    removed at the end."""
    settings.PWD_POOL_SIZE = 0
    settings.PWD_POOL_SESSIONS = 2
    keeper = OneAtATime()
    yield keeper
    keeper.close()
    for session_id in Session.objects.values_list("pk", flat=True):
        remove_session_objects(session_id)


def held_ids() -> set[str]:
    return set(hot.ready().values_list("pk", flat=True))


def node1_of(session_id: str) -> Node:
    return Node.objects.get(session_id=session_id, name="node1")


async def start(client: AsyncClient | None = None, **headers: str):
    """The landing page's Start as its script sends it."""
    return await post(client or AsyncClient(), "/start/", {}, **{**JSON, **headers})


def test_a_keeper_pass_holds_sessions_with_node1_at_a_prompt_on_their_network(engine, keeper):
    keeper.run_once()

    held = list(hot.ready())
    assert len(held) == 2
    for session in held:
        node = node1_of(session.pk)
        assert (node.status, node.hostname, session.client_key) == ("running", "node1", "")
        labels = engine.client().api.inspect_container(node.container_id)["Config"]["Labels"]
        assert labels[engine.LABEL_SESSION] == session.pk
        assert labels[engine.LABEL_NODE] == "node1"
        assert labels[engine.LABEL_ROLE] == engine.ROLE_NODE
        assert sh(engine, node.container_id, "hostname") == "node1"
        assert "bash -l" in sh(engine, node.container_id, "ps -eo args")
        networks = engine.client().api.inspect_container(node.container_id)["NetworkSettings"]
        assert session.network_name in networks["Networks"]
        sh(engine, node.container_id, "docker version --format '{{.Server.Version}}'")
    assert keeper.hold() == 0  # two are held: none more


async def test_a_held_session_is_invisible_until_handed_out(engine, keeper):
    await sync_to_async(keeper.hold)()
    (session_id, *_) = await sync_to_async(held_ids)()
    client = AsyncClient()

    assert (await client.get(f"/api/sessions/{session_id}/")).status_code == 404
    assert (await client.get(f"/p/{session_id}/")).status_code == 404
    assert (await add_node(client, session_id)).status_code == 404
    assert not await Session.objects.active().filter(pk=session_id).aexists()


async def test_start_hands_out_a_held_session_with_its_clock_started_and_the_keeper_refills(
    engine, keeper
):
    await sync_to_async(keeper.hold)()
    before = await sync_to_async(held_ids)()
    await Session.objects.filter(pk__in=before).aupdate(
        created_at=timezone.now() - timedelta(days=3)
    )

    response = await start(ClientAt("198.51.100.7"))

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"] in before
    assert body["url"] == f"/p/{body['id']}/"
    assert [node["name"] for node in body["nodes"]] == ["node1"]
    session = await Session.objects.aget(pk=body["id"])
    assert session.held_at is None
    assert session.client_key == quotas.client_key("198.51.100.7")
    assert timezone.now() - session.created_at < timedelta(minutes=1)
    assert (await AsyncClient().get(f"/api/sessions/{body['id']}/")).status_code == 200
    assert (await AsyncClient().get(body["url"])).status_code == 200
    # The next add is node2, as on any session that has node1.
    added = await add_node(AsyncClient(), body["id"])
    assert (added.status_code, added.json()["name"]) == (201, "node2")

    assert await sync_to_async(keeper.hold)() == 1
    after = await sync_to_async(held_ids)()
    assert len(after) == 2
    assert body["id"] not in after


async def test_the_start_form_without_script_is_redirected_to_a_held_session(engine, keeper):
    await sync_to_async(keeper.hold)()
    before = await sync_to_async(held_ids)()

    response = await AsyncClient().post("/start/")

    assert response.status_code == 302
    assert response["Location"].removeprefix("/p/").rstrip("/") in before


def landing_start(url: str, ready: threading.Barrier) -> dict:
    """A browser's Start on the landing page at ``url``: the page (its CSRF cookie and
    token), then, once every caller has its page, the script's POST /start/."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    with opener.open(url + "/", timeout=30) as page:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.read().decode())
    request = urllib.request.Request(
        url + "/start/",
        data=b"{}",
        method="POST",
        headers={**JSON, "Content-Type": "application/json", "X-CSRFToken": token[1]},
    )
    ready.wait(timeout=60)
    with opener.open(request, timeout=120) as response:
        assert response.status == 201
        return json.loads(response.read())


def test_concurrent_starts_on_two_web_processes_never_get_the_same_session(engine, tmp_path):
    env = {
        "PWD_POOL_SIZE": "0",
        "PWD_POOL_SESSIONS": "3",
        "PWD_SESSIONS_PER_IP": "1000/h",
        "PWD_MAX_SESSIONS_PER_CLIENT": "100",
    }
    with Instance(tmp_path, env, settings.PWD_INSTANCE) as instance:
        first, second = LiveServer(instance), LiveServer(instance)
        with first, second:
            for _ in range(2):  # a pass makes two at most
                assert first.manage("pool", "--once", timeout=240).returncode == 0
            listed = first.python(
                "import json\nfrom sessions_app import hot\n"
                "print(json.dumps(sorted(hot.ready().values_list('pk', flat=True))))"
            )
            held = json.loads(listed.stdout)
            assert len(held) == 3, listed.stderr
            ready = threading.Barrier(8)
            with ThreadPoolExecutor(8) as pool:
                answers = list(
                    pool.map(lambda n: landing_start((first, second)[n % 2].url, ready), range(8))
                )

    hot_ones = [a["id"] for a in answers if [n["name"] for n in a["nodes"]] == ["node1"]]
    assert sorted(hot_ones) == held
    assert all(a["nodes"] == [] for a in answers if a["id"] not in held)
    assert len({a["id"] for a in answers}) == 8


async def test_start_with_none_held_makes_an_empty_session_as_before(engine, keeper):
    response = await start()

    assert response.status_code == 201, response.content
    assert response.json()["nodes"] == []
    session = await Session.objects.aget(pk=response.json()["id"])
    assert session.network_name
    assert session.held_at is None


async def test_start_with_hot_sessions_off_leaves_held_ones_alone(engine, keeper, settings):
    await sync_to_async(keeper.hold)()
    settings.PWD_POOL_SESSIONS = 0

    response = await start()

    assert response.json()["nodes"] == []
    assert len(await sync_to_async(held_ids)()) == 2


async def test_the_api_never_hands_out_a_held_session(engine, keeper):
    await sync_to_async(keeper.hold)()
    before = await sync_to_async(held_ids)()

    created = await create_session(AsyncClient())

    assert created["id"] not in before
    assert created["nodes"] == []
    assert await sync_to_async(held_ids)() == before


def test_a_held_session_is_never_reaped_however_old(engine, keeper):
    keeper.hold()
    (session_id, *_) = held_ids()
    node = node1_of(session_id)
    much_later = timezone.now() + timedelta(days=30)

    report = Reaper(interval=1).run_once(much_later)

    assert session_id not in report.ended
    assert node.container_id not in report.removed_containers
    assert session_id in held_ids()
    assert engine.container_status(node.container_id) == "running"
    assert Session.objects.get(pk=session_id).network_name in {
        n["Name"] for n in engine.list_objects().networks
    }


async def test_held_sessions_count_against_no_cap(engine, keeper, settings):
    await sync_to_async(keeper.hold)()
    settings.PWD_MAX_SESSIONS = 1
    settings.PWD_MAX_TOTAL_NODES = 1
    settings.PWD_MAX_SESSIONS_PER_CLIENT = 1

    assert await sync_to_async(quotas.nodes_in_use)() == 0
    created = await post(ClientAt("198.51.100.8"), "/api/sessions/")
    assert created.status_code == 201, created.content
    node = await add_node(AsyncClient(), created.json()["id"])
    assert node.status_code == 201, node.content


async def test_a_start_whose_node1_would_pass_the_node_cap_gets_an_empty_session(
    engine, keeper, settings
):
    await sync_to_async(keeper.hold)()
    settings.PWD_MAX_TOTAL_NODES = 1
    other = await Session.objects.acreate()
    await Node.objects.acreate(
        session=other, name="node1", hostname="node1", status=Node.Status.RUNNING
    )

    response = await start()

    assert response.status_code == 201, response.content
    assert response.json()["nodes"] == []
    assert len(await sync_to_async(held_ids)()) == 2


async def test_a_start_past_the_sessions_cap_is_refused_as_before(engine, keeper, settings):
    await sync_to_async(keeper.hold)()
    settings.PWD_MAX_SESSIONS = 1
    assert (await start(ClientAt("198.51.100.9"))).status_code == 201

    refused = await start(ClientAt("198.51.100.10"))

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "at_capacity"
    assert int(refused["Retry-After"]) > 0
    assert len(await sync_to_async(held_ids)()) == 1


def test_the_keeper_drops_a_held_session_whose_node_died_and_makes_another(engine, keeper):
    keeper.hold()
    (session_id, *_) = held_ids()
    session = Session.objects.get(pk=session_id)
    engine.remove_node(node1_of(session_id).container_id)

    keeper.hold()

    session.refresh_from_db()
    assert session.ended_at is not None
    assert session_id not in held_ids()
    assert len(held_ids()) == 2
    objects = engine.list_objects()
    assert session.network_name not in {n["Name"] for n in objects.networks}
    labelled = [
        c for c in objects.containers if c["Labels"].get(engine.LABEL_SESSION) == session_id
    ]
    assert labelled == []


def test_the_reaper_removes_a_held_session_whose_node_died(engine, keeper):
    keeper.hold()
    (session_id, *_) = held_ids()
    session = Session.objects.get(pk=session_id)
    engine.remove_node(node1_of(session_id).container_id)
    reaper = Reaper(interval=1)

    first = reaper.run_once()  # node1 is marked gone
    second = reaper.run_once()  # the session it leaves is ended and removed

    assert f"{session_id[:6]}/node1" in first.gone_nodes
    assert session_id in second.ended
    assert session_id in second.cleaned
    session.refresh_from_db()
    assert session.ended_at is not None
    assert session.network_name not in {n["Name"] for n in engine.list_objects().networks}


async def test_a_start_skips_a_held_session_whose_node_died_unnoticed(engine, keeper):
    await sync_to_async(keeper.hold)()
    oldest = hot.ready().order_by("held_at", "pk").values_list("pk", flat=True)
    dead, alive = await sync_to_async(list)(oldest)
    await engine.run(engine.remove_node, (await sync_to_async(node1_of)(dead)).container_id)

    response = await start(ClientAt("198.51.100.11"))

    assert response.status_code == 201, response.content
    assert response.json()["id"] == alive
    spoiled = await Session.objects.aget(pk=dead)
    assert spoiled.ended_at is not None
    assert spoiled.client_key == ""  # not counted against the client's rate


async def test_a_terminal_opened_ahead_and_never_joined_is_closed(engine, keeper, monkeypatch):
    from terminals import hub as hubs
    from terminals import warm

    monkeypatch.setattr(warm, "WARM_FOR", 0.5)
    await sync_to_async(keeper.hold)()
    (session_id, *_) = await sync_to_async(held_ids)()
    container_id = (await sync_to_async(node1_of)(session_id)).container_id

    warm.soon(container_id)
    hub = await hubs.get_hub(container_id)  # the one being opened ahead

    assert not hub.closed
    assert hub.snapshot()  # the screen was replayed from the log: the prompt
    for _ in range(300):  # 30 s at most
        if hub.closed:
            break
        await asyncio.sleep(0.1)
    assert hub.closed
