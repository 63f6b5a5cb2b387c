"""The classroom wall's websockets: only a workshop's instructors get in; the wall shows
a trainee's screen as it changes; a seat's terminal is read-only until take-over, and
the trainee's page is told when the instructor types. A watcher never resizes."""

import asyncio
import json
import re

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from pwd_site.routing import websocket_application
from sessions_app.models import Session
from terminals import hub as hubs
from tests.api_helpers import run
from tests.terminal_helpers import Terminal
from tests.test_events import listen
from tests.workshop_helpers import make_user, workshop_of
from workshops.models import Seat
from workshops.provision import Provisioner

pytestmark = pytest.mark.django_db(transaction=True)


def cookie_of(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def as_user(path: str, cookie: bytes | None) -> Terminal:
    """A Terminal (the terminal protocol's test client) sending the login cookie."""
    terminal = Terminal(path)
    headers = [(b"host", b"testserver"), (b"origin", b"http://testserver")]
    if cookie:
        headers.append((b"cookie", cookie))
    terminal.comm = WebsocketCommunicator(websocket_application, path, headers=headers)
    return terminal


async def refused_with(path: str, cookie: bytes | None) -> tuple[int | None, list]:
    socket = as_user(path, cookie)
    connected, _ = await socket.connect()
    assert connected  # accepted, told why, closed
    with pytest.raises(AssertionError):
        await socket.until(lambda t: False, within=5)
    return socket.closed, socket.errors() + [m for m in socket.messages if "error" in m]


async def test_only_the_workshops_instructors_get_the_wall_or_a_seat_terminal():
    owner = await sync_to_async(make_user)("owner")
    other = await sync_to_async(make_user)("other")
    trainee = await sync_to_async(make_user)("trainee", instructor=False)
    workshop = await sync_to_async(workshop_of)(owner, seats=1)
    paths = [
        f"/ws/workshops/{workshop.pk}/wall/",
        f"/ws/workshops/{workshop.pk}/seats/1/nodes/node1/terminal/",
    ]
    for path in paths:
        code, said = await refused_with(path, None)
        assert code == 4403, (path, said)
        code, said = await refused_with(path, await sync_to_async(cookie_of)(trainee))
        assert code == 4403, (path, said)
        code, said = await refused_with(path, await sync_to_async(cookie_of)(other))
        assert code == 4404, (path, said)


@pytest.mark.docker
async def test_the_wall_shows_the_trainee_typing_and_take_over_reaches_the_shell(
    engine, sessions, settings
):
    settings.PWD_POOL_SIZE = 0
    owner = await sync_to_async(make_user)("owner")
    workshop = await sync_to_async(workshop_of)(owner, seats=1, image=settings.PWD_NODE_IMAGE)
    await Provisioner(parallelism=1).run_once()
    seat = await Seat.objects.select_related("session").aget(workshop=workshop)
    assert seat.status == "ready", seat.error
    session: Session = seat.session
    cookie = await sync_to_async(cookie_of)(owner)
    try:
        trainee = Terminal(f"/ws/sessions/{session.id}/nodes/node1/terminal/")
        assert (await trainee.connect())[0]
        await trainee.send({"type": "resize", "cols": 100, "rows": 30})
        events = await listen(session.id)

        wall = as_user(f"/ws/workshops/{workshop.pk}/wall/", cookie)
        assert (await wall.connect())[0]
        await wall.until(lambda t: any(m.get("type") == "roster" for m in t.messages), 20)
        roster = next(m for m in wall.messages if m.get("type") == "roster")
        assert roster["seats"][0]["status"] == "ready"

        await trainee.type("echo wall-$((40+2))\r")
        shown = lambda t: any(  # noqa: E731
            m.get("type") == "screen" and any("wall-42" in line for line in m["lines"])
            for m in t.messages
        )
        await wall.until(shown, 30)

        watcher = as_user(f"/ws/workshops/{workshop.pk}/seats/1/nodes/node1/terminal/", cookie)
        assert (await watcher.connect())[0]
        await watcher.until(lambda t: any(m.get("state") == "connected" for m in t.messages))
        # Watching: a resize is ignored, input refused.
        await watcher.send({"type": "resize", "cols": 40, "rows": 10})
        await watcher.type("echo nope > /tmp/nope\r")
        await watcher.until(lambda t: any(e["code"] == "read_only" for e in t.errors()))

        await watcher.send({"type": "takeover", "active": True})
        await watcher.type("echo taken-$((6*7)) > /tmp/takeover; stty size\r")
        await trainee.until(lambda t: re.search(r"30 100", t.text), 20)
        result = await run(sessions.client, session.id, "node1", "cat /tmp/takeover; ls /tmp")
        assert "taken-42" in result["output"]
        assert "nope" not in result["output"]

        heard = []
        for _ in range(20):
            heard.append(await events.receive_json_from(10))
            if heard[-1]["type"] == "instructor.typing":
                break
        kinds = [e["type"] for e in heard]
        assert "instructor.takeover" in kinds
        assert kinds[-1] == "instructor.typing"
        await watcher.send({"type": "takeover", "active": False})
        for socket in (watcher, wall, trainee):
            await socket.comm.disconnect()
        await events.disconnect()
    finally:
        await hubs.close_all()
        from workshops import services

        await services.end(workshop)
        await asyncio.sleep(0)


async def test_the_wall_ignores_what_it_cannot_read():
    owner = await sync_to_async(make_user)("owner")
    workshop = await sync_to_async(workshop_of)(owner, seats=1)
    wall = as_user(f"/ws/workshops/{workshop.pk}/wall/", await sync_to_async(cookie_of)(owner))
    assert (await wall.connect())[0]
    for frame in (
        "not json",
        "[" * 5000,
        json.dumps({"type": "visible", "seats": "all"}),
        json.dumps({"type": "visible", "seats": list(range(10000))}),
    ):
        await wall.comm.send_to(text_data=frame)
    await wall.comm.send_to(bytes_data=b"\x00\x01")
    await wall.until(lambda t: any(m.get("type") == "roster" for m in t.messages), 20)
    assert wall.closed is None
    await wall.comm.disconnect()
