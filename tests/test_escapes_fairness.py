"""Fairness between sessions (issue 10, M3, M6 and L1): one session's execs, one client
address and one terminal's flood cannot take what others need.

Every assertion is causal, not timed: the other session's work finishes *while* the
hog is still at it. The numbers (echo p95 next to a flood) are in docs/benchmarks.md.
"""

import asyncio
import inspect
import re

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.test import AsyncClient

from sessions_app import engine, pool, services
from sessions_app.keeper import Keeper
from sessions_app.models import Node, PoolNode, Session
from terminals import hub as hubs
from tests.api_helpers import ClientAt, add_node, create_session, error_of, post, run
from tests.terminal_helpers import Terminal

pytestmark = pytest.mark.django_db(transaction=True)

HOG_EXECS = 34


def _exec(client: AsyncClient, session_id: str, script: str, seconds: float):
    return post(
        client,
        f"/api/sessions/{session_id}/nodes/node1/exec/",
        {"command": ["sh", "-c", script], "timeout": seconds},
    )


def _sleeps(engine, container_id: str, marker: str) -> int:
    """How many of the hog's commands run in its node, as the engine lists processes."""
    top = engine.client().api.top(container_id, ps_args="-eo pid,args")
    return sum(
        1 for _, args in top["Processes"] or [] if args.startswith("sleep") and marker in args
    )


async def _until(predicate, what: str, tries: int = 300, pause: float = 0.2) -> None:
    """Poll ``predicate`` (plain or async) until it holds; at most ``tries`` times."""
    for _ in range(tries):
        held = predicate()
        if await held if inspect.isawaitable(held) else held:
            return
        await asyncio.sleep(pause)
    pytest.fail(f"gave up waiting for {what}")


# --- M3: execs --------------------------------------------------------------------------


@pytest.mark.docker
async def test_34_execs_in_one_session_leave_another_sessions_add_exec_and_end_unhindered(
    engine, sessions, settings
):
    settings.PWD_POOL_SIZE = 0  # cold starts: the add below needs engine threads
    hog = await sessions.create()
    assert (await add_node(sessions.client, hog["id"])).status_code == 201
    node = await Node.objects.aget(session_id=hog["id"], name="node1")
    # 120 s, far longer than the other session needs; ending the hog's session ends them.
    hogs = [
        asyncio.create_task(_exec(sessions.client, hog["id"], "sleep 120.5", 150))
        for _ in range(HOG_EXECS)
    ]
    try:

        async def all_turns_taken() -> bool:
            running = await engine.run(_sleeps, engine, node.container_id, "120.5")
            return running == settings.PWD_EXEC_PER_SESSION

        await _until(all_turns_taken, "the hog's commands to start")

        other = await sessions.create()
        added = await add_node(sessions.client, other["id"])
        result = await run(sessions.client, other["id"], "node1", "echo hi")
        ended = await sessions.client.delete(f"/api/sessions/{other['id']}/")

        assert added.status_code == 201, added.content
        assert result["output"] == "hi\n"
        assert ended.status_code == 204
        assert not any(task.done() for task in hogs), "a hog's exec returned first"
        # The session's own limit held all along: the rest are still waiting their turn.
        running = await engine.run(_sleeps, engine, node.container_id, "120.5")
        assert running == settings.PWD_EXEC_PER_SESSION
    finally:
        await sessions.client.delete(f"/api/sessions/{hog['id']}/")
        done, pending = await asyncio.wait(hogs, timeout=120)
        for task in pending:
            task.cancel()
    assert not pending, "the hog's execs did not end with its session"


@pytest.fixture
async def fake_exec(monkeypatch):
    """Execs that run until the test lets them go, on a node row with no container."""
    release = asyncio.Event()
    started: list[str] = []

    async def run_exec(func, container_id, command, *args):
        started.append(command[-1])
        await release.wait()
        return engine.ExecResult(0, command[-1], False, False)

    monkeypatch.setattr(engine, "run_exec", run_exec)
    session = await Session.objects.acreate()
    await Node.objects.acreate(
        session=session, name="node1", hostname="node1", status=Node.Status.RUNNING
    )
    return session, started, release


async def test_past_its_waiting_execs_a_session_gets_429_too_many_execs(
    fake_exec, settings, monkeypatch
):
    session, started, release = fake_exec
    settings.PWD_EXEC_PER_SESSION = 1
    monkeypatch.setattr(services, "EXEC_WAITING_MAX", 2)
    client = AsyncClient()
    first = [asyncio.create_task(_exec(client, session.id, str(n), 5)) for n in range(3)]
    await _until(lambda: len(started) == 1, "the first exec to start")
    await _until(lambda: services._exec_turns.waiting(session.id) == 2, "two to wait")

    refused = await _exec(client, session.id, "refused", 5)
    release.set()
    answers = await asyncio.gather(*first)

    assert refused.status_code == 429
    assert error_of(refused)["code"] == "too_many_execs"
    assert int(refused["Retry-After"]) > 0
    assert sorted(r.json()["output"] for r in answers) == ["0", "1", "2"]
    assert services._exec_turns.running(session.id) == 0


async def test_a_client_hanging_up_keeps_its_turn_until_its_command_ends(fake_exec, settings):
    session, started, release = fake_exec
    settings.PWD_EXEC_PER_SESSION = 1
    client = AsyncClient()
    gone = asyncio.create_task(_exec(client, session.id, "gone", 5))
    await _until(lambda: started == ["gone"], "the first exec to start")
    gone.cancel()
    waiting = asyncio.create_task(_exec(client, session.id, "next", 5))
    await _until(lambda: services._exec_turns.waiting(session.id) == 1, "one to wait")

    assert started == ["gone"]  # the command of the client that left still holds the turn
    release.set()
    assert (await waiting).json()["output"] == "next"


# --- M6: per-client caps and prepared nodes ------------------------------------------------


@pytest.fixture
def no_engine(monkeypatch):
    """Sessions without an overlay network and nodes without containers: these tests are
    about admission only."""
    monkeypatch.setattr(
        engine, "create_session_network", lambda session_id: (f"net-{session_id}", "id")
    )

    async def acquire_node(session, name, image):
        return engine.NodeHandle(f"fake-{session.pk}-{name}", "10.0.0.9")

    monkeypatch.setattr(services, "acquire_node", acquire_node)


async def test_one_address_past_its_active_sessions_gets_429_and_others_do_not(no_engine, settings):
    settings.PWD_MAX_SESSIONS_PER_CLIENT = 3
    settings.PWD_SESSIONS_PER_IP = (1000, 3600)
    trainees = ClientAt("198.51.100.7")
    made = [await create_session(trainees) for _ in range(3)]

    refused = await post(trainees, "/api/sessions/")
    other = await post(ClientAt("198.51.100.8"), "/api/sessions/")
    ended = await Session.objects.aget(pk=made[0]["id"])
    await sync_to_async(ended.end)()
    again = await post(trainees, "/api/sessions/")

    assert refused.status_code == 429
    assert error_of(refused)["code"] == "client_limit"
    assert int(refused["Retry-After"]) > 0
    assert other.status_code == 201
    assert again.status_code == 201  # an ended session frees its place


async def test_one_address_past_its_nodes_gets_429_and_starts_nothing(no_engine, settings):
    settings.PWD_MAX_NODES_PER_CLIENT = 2
    trainees = ClientAt("198.51.100.7")
    first, second = [await create_session(trainees) for _ in range(2)]
    assert (await add_node(trainees, first["id"])).status_code == 201
    assert (await add_node(trainees, second["id"])).status_code == 201

    # The limit follows the session's creator, whoever holds its id.
    refused = await add_node(ClientAt("203.0.113.1"), first["id"])
    other = await create_session(ClientAt("198.51.100.8"))
    allowed = await add_node(ClientAt("198.51.100.8"), other["id"])

    assert refused.status_code == 429
    assert error_of(refused)["code"] == "client_limit"
    assert int(refused["Retry-After"]) > 0
    assert await Node.objects.filter(session_id=first["id"]).acount() == 1
    assert allowed.status_code == 201


async def test_a_class_of_thirty_behind_one_nat_gets_a_session_and_two_nodes_each(
    no_engine, settings
):
    settings.PWD_POOL_SIZE = 0
    room = ClientAt("198.51.100.7")
    made = await asyncio.gather(*(create_session(room) for _ in range(30)))

    adds = [await add_node(room, data["id"]) for data in made for _ in range(2)]

    assert [r.status_code for r in adds] == [201] * 60


def _fill(keeper: Keeper) -> None:
    """Keeper passes until the pool is full (a start may fail on a busy machine)."""
    ready = PoolNode.objects.ready()
    for _ in range(3):
        keeper.run_once()
        if ready.count() >= keeper.size:
            return
    pytest.fail(f"the pool did not fill to {keeper.size} in 3 keeper passes")


@pytest.mark.docker
async def test_nodes_attached_ahead_never_outnumber_the_pool(engine, settings):
    settings.PWD_POOL_SIZE = 1
    settings.PWD_POOL_PREPARE = True
    keeper = Keeper(size=1)
    made: list[Session] = []
    prepared = PoolNode.objects.attached_ahead()
    seen: list[int] = []
    try:
        for _ in range(3):
            await sync_to_async(_fill)(keeper)
            made.append(await services.create_session())
            await _settled()
            await sync_to_async(_fill)(keeper)
            await sync_to_async(keeper.run_once)()  # full: the keeper prepares if it may
            seen.append(await prepared.acount())
        assert seen == [1, 1, 1]
        pool_containers = [
            c
            for c in engine.list_objects().containers
            if c["Labels"].get(engine.LABEL_ROLE) == engine.ROLE_POOL
        ]
        assert len(pool_containers) <= 2 * settings.PWD_POOL_SIZE
        # A session with none attached ahead still adds its node (from the pool).
        lacking = [s for s in made if not await prepared.filter(session=s).aexists()]
        node = await services.add_node(lacking[0], settings.PWD_NODE_IMAGE)
        assert node.status == Node.Status.RUNNING
    finally:
        await _settled()
        await sync_to_async(keeper.close)()
        for session in made:
            await engine.run(engine.remove_session_objects, session.id)
        for container in engine.list_objects().containers:
            if container["Labels"].get(engine.LABEL_ROLE) == engine.ROLE_POOL:
                await engine.run(engine.remove_node, container["Id"])


async def _settled() -> None:
    for _ in range(100):
        tasks = pool.pending()
        if not tasks:
            return
        await asyncio.gather(*tasks, return_exceptions=True)


# --- L1: terminal output ------------------------------------------------------------------


@pytest.fixture
async def two_terminals(engine):
    """Two nodes in two sessions; yields their Node rows, removes the containers after."""
    handles = [
        await engine.run(engine.create_node, None, f"fair{n}", None, role=engine.ROLE_PROBE)
        for n in range(2)
    ]
    try:
        yield [await database_sync_to_async(_node_row)(h.container_id) for h in handles]
    finally:
        await hubs.close_all()
        for handle in handles:
            await engine.run(engine.remove_node, handle.container_id)


def _node_row(container_id: str) -> Node:
    return Node.objects.create(
        session=Session.objects.create(),
        name="node1",
        hostname="node1",
        image="pwd-node",
        status=Node.Status.RUNNING,
        container_id=container_id,
    )


async def _open(node: Node) -> Terminal:
    terminal = Terminal(node.terminal_path)
    connected, _ = await terminal.connect()
    assert connected
    await terminal.until(lambda t: any(m.get("state") == "connected" for m in t.messages))
    return terminal


@pytest.mark.docker
async def test_a_flood_with_a_client_that_never_acks_leaves_another_sessions_echo_working(
    two_terminals,
):
    flooded, quiet = two_terminals
    flood = await _open(flooded)
    typist = await _open(quiet)
    received = 0

    async def discard() -> None:
        nonlocal received
        while True:
            event = await flood.comm.output_queue.get()
            received += len(event.get("bytes") or b"")

    await flood.type("cat /dev/urandom | base64\r")
    reader = asyncio.create_task(discard())
    try:
        await _until(lambda: received > 256 * 1024, "the flood to flow")
        before = received
        for n in range(20):
            typist.output.clear()
            await typist.type(f"echo fair-$(({n}+1000))\r")
            await typist.until(lambda t, n=n: re.search(rf"[\r\n]fair-{n + 1000}\r\n", t.text))
        health = await AsyncClient().get("/healthz")

        assert health.status_code == 200
        # It flowed on meanwhile (a client that never acks gets ~1 MiB/s).
        assert received - before > 64 * 1024, "the flood stopped while the echo was measured"
    finally:
        reader.cancel()
        await flood.type("\x03")
        await flood.close()
        await typist.close()
