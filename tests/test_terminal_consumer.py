"""The terminal websocket on a real node: echo, resize, reconnect, sharing, floods, errors."""

import asyncio
import re

import pytest
from channels.db import database_sync_to_async

from sessions_app.models import Node, Session
from terminals import hub as hubs
from tests.terminal_helpers import Terminal

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def container(engine):
    handle = engine.create_node(None, "node1", None, role=engine.ROLE_PROBE)
    yield handle.container_id
    engine.remove_node(handle.container_id)


@pytest.fixture
async def node(container):
    node = await database_sync_to_async(_make_node)(container)
    yield node
    await hubs.close_all()


def _make_node(container_id: str, name: str = "node1") -> Node:
    session = Session.objects.create()
    return Node.objects.create(
        session=session,
        name=name,
        hostname=name,
        image="pwd-node",
        status=Node.Status.RUNNING,
        container_id=container_id,
    )


async def _open(node: Node, **kwargs) -> Terminal:
    terminal = Terminal(node.terminal_path, **kwargs)
    connected, _ = await terminal.connect()
    assert connected
    await terminal.until(lambda t: any(m.get("state") == "connected" for m in t.messages))
    return terminal


async def test_it_runs_a_command_and_echoes_its_output(node):
    terminal = await _open(node)
    await terminal.type("echo $((6*7))\r")
    await terminal.until(lambda t: re.search(r"[\r\n]42\r\n", t.text))
    await terminal.close()


async def test_the_terminal_works_while_the_channel_layer_is_down(node, settings):
    from tests.live_server import free_port

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{free_port()}/0"]},  # nothing listens
        }
    }
    terminal = await _open(node)
    await terminal.type("echo layer-down-$((6*7))\r")
    await terminal.until_text("layer-down-42\r\n")
    await terminal.drain(1.0)
    assert terminal.closed is None
    await terminal.close()


async def test_it_resizes_the_tty(node):
    terminal = await _open(node)
    await terminal.send({"type": "resize", "cols": 123, "rows": 37})
    await terminal.type("stty size\r")
    await terminal.until_text("37 123")
    assert not terminal.errors()
    await terminal.close()


async def test_a_reconnect_gets_the_screen_back_exactly_once(node):
    first = await _open(node)
    await first.type("echo reconnect-$((40+2))\r")
    await first.until_text("reconnect-42\r\n")
    await first.drain()
    await first.close()

    second = await _open(node)
    await second.until_text("reconnect-42")
    await second.drain(0.5)
    assert second.text.count("reconnect-42") == 1
    assert second.text.startswith("\x1bc")
    await second.type("echo after-$((1+1))\r")
    await second.until_text("after-2\r\n")
    await second.drain()
    assert second.text.count("reconnect-42") == 1
    await second.close()


async def test_two_clients_share_one_shell(node):
    alice = await _open(node)
    bob = await _open(node)
    await alice.type("echo shared-$((3*3))\r")
    await alice.until_text("shared-9\r\n")
    await bob.until_text("shared-9\r\n")
    await bob.type("echo from-bob-$((2*2))\r")
    await alice.until_text("from-bob-4\r\n")
    await alice.close()
    await bob.close()


async def test_a_small_viewer_does_not_shrink_the_typist(node):
    typist = await _open(node)
    await typist.send({"type": "resize", "cols": 140, "rows": 40})
    await typist.type("stty size\r")
    await typist.until_text("40 140")
    viewer = await _open(node)
    await viewer.send({"type": "resize", "cols": 40, "rows": 20})
    await typist.type("echo size:$(stty size | tr ' ' x)\r")
    await typist.until_text("size:40x140")
    await viewer.type("echo size:$(stty size | tr ' ' x)\r")
    await viewer.until_text("size:20x40")
    await typist.close()
    await viewer.close()


async def test_ctrl_c_stops_a_flood_and_other_terminals_keep_answering(node, engine):
    other_handle = await engine.run(engine.create_node, None, "node2", None, role=engine.ROLE_PROBE)
    try:
        other = await database_sync_to_async(_make_node)(other_handle.container_id, "node2")
        terminal = await _open(node)
        quiet = await _open(other)
        await terminal.type("yes flood-line\r")
        await terminal.until(lambda t: t.text.count("flood-line") > 5000, within=20)
        # The other terminal answers while the flood goes on (how fast is the bench's
        # to say: no timed assertions here).
        await quiet.type("echo still-$((5+5))\r")
        await quiet.until_text("still-10\r\n", within=10)
        assert terminal.closed is None  # the flooding terminal is still open
        hub = hubs._hubs[node.container_id]
        assert len(hub.screen.pending) <= hubs.EMULATOR_BACKLOG

        await terminal.type("\x03")
        await terminal.until(lambda t: "^C" in t.text[-20000:], within=10)
        await terminal.type("echo done-$((7*6))\r")
        await terminal.until_text("done-42\r\n", within=10)
        await terminal.close()
        await quiet.close()
    finally:
        await engine.run(engine.remove_node, other_handle.container_id)


async def test_an_acknowledging_client_paces_a_flood_and_a_stalled_one_is_resynced(node):
    reader = await _open(node)
    stalled = await _open(node)
    await stalled.send({"type": "ack", "bytes": 0})  # acknowledges once, then never again
    await reader.send({"type": "ack", "bytes": 0})
    await reader.type("yes paced-line\r")
    try:
        await _pace_and_interrupt(node, reader, stalled)
    finally:
        # A failure must not leave the flood running for the next test on this node.
        await reader.type("\x03")
    await reader.close()
    await stalled.close()


async def _pace_and_interrupt(node: Node, reader: Terminal, stalled: Terminal) -> None:
    hub = hubs._hubs[node.container_id]
    deadline = asyncio.get_running_loop().time() + 20
    peak = largest = 0
    while len(reader.output) < 4 * 1024 * 1024:
        assert asyncio.get_running_loop().time() < deadline, "the flood stopped flowing"
        await reader._pump_one(5)
        await reader.send({"type": "ack", "bytes": len(reader.output)})
        peak = max(peak, *(len(c.buffer) for c in hub.clients if not c.stalled))
        largest = max(largest, *(len(c.buffer) for c in hub.clients))
    # A client keeping up has at most the high-water mark (plus one read) queued; the
    # one that stopped acknowledging was resynchronised instead of holding the flood
    # back, and its queue stays bounded too.
    assert peak <= hubs.CLIENT_HIGH_WATER + hubs.READ_SIZE
    assert largest <= hubs.CLIENT_QUEUE_MAX + hubs.READ_SIZE
    await stalled.drain(0.2)
    assert any(m.get("state") == "resync" for m in stalled.messages)

    await reader.type("\x03")
    stopped = asyncio.get_running_loop().time()
    while "^C" not in reader.text[-20000:]:
        assert asyncio.get_running_loop().time() - stopped < 1.0, "Ctrl-C took over a second"
        await reader._pump_one(5)
        await reader.send({"type": "ack", "bytes": len(reader.output)})
    await reader.type("echo paced-$((6*7))\r")
    await reader.until_text("paced-42\r\n", within=10)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ('{"type": "bogus"}', "unknown_type"),
        ("[1, 2]", "unknown_type"),
        ('{"type": "resize", "cols": 0, "rows": 24}', "invalid_resize"),
        ('{"type": "resize", "cols": 1000000, "rows": 24}', "invalid_resize"),
        ('{"type": "resize", "cols": 80, "rows": 1000000}', "invalid_resize"),
        ('{"type": "resize", "cols": "80", "rows": 24}', "invalid_resize"),
        ('{"type": "input", "data": 42}', "invalid_input"),
        (b"\x00binary", "binary_not_accepted"),
    ],
)
async def test_a_bad_frame_gets_an_error_and_the_terminal_still_works(node, frame, code):
    terminal = await _open(node)
    if isinstance(frame, bytes):
        await terminal.comm.send_to(bytes_data=frame)
    else:
        await terminal.comm.send_to(text_data=frame)
    await terminal.until(lambda t: t.errors())
    assert terminal.errors()[0]["code"] == code
    assert terminal.errors()[0]["message"]
    await terminal.type("echo ok-$((1+2))\r")
    await terminal.until_text("ok-3\r\n")
    assert terminal.closed is None
    await terminal.close()


@pytest.mark.parametrize("which", ["session", "node"])
async def test_an_unknown_session_or_node_gets_an_error_and_4404(node, which):
    path = (
        "/ws/sessions/nope/nodes/node1/terminal/"
        if which == "session"
        else f"/ws/sessions/{node.session_id}/nodes/node7/terminal/"
    )
    terminal = Terminal(path)
    connected, _ = await terminal.connect()
    assert connected
    await terminal.until(lambda t: t.closed is not None)
    assert terminal.closed == 4404
    assert terminal.errors()[0]["code"] == "not_found"


async def test_an_ended_session_gets_4404(node):
    await database_sync_to_async(lambda: Session.objects.get(pk=node.session_id).end())()
    terminal = Terminal(node.terminal_path)
    await terminal.connect()
    await terminal.until(lambda t: t.closed is not None)
    assert terminal.closed == 4404


async def test_a_foreign_origin_is_refused(node):
    terminal = Terminal(node.terminal_path, origin="http://evil.example")
    connected, _ = await terminal.connect()
    # Closed before accept: daphne answers the handshake with HTTP 403.
    assert not connected
    assert terminal.comm.output_queue.empty()


async def test_typing_counts_as_session_activity(node):
    before = await database_sync_to_async(
        lambda: Session.objects.get(pk=node.session_id).last_activity_at
    )()
    await asyncio.sleep(1.1)
    terminal = await _open(node)
    await terminal.type("true\r")
    await terminal.drain()
    after = await database_sync_to_async(
        lambda: Session.objects.get(pk=node.session_id).last_activity_at
    )()
    assert after > before
    await terminal.close()
