"""A hub's clients: the window of output in flight, and who waits for a slow client."""

import asyncio

import pytest

from terminals import client as clients
from terminals import hub as hubs
from terminals.client import CLIENT_HIGH_WATER, CLIENT_WINDOW_MAX, CLIENT_WINDOW_MIN, Client


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


async def _nothing(_message: object) -> None:
    return None


def _client(hub: object) -> Client:
    return Client(hub, _nothing, _nothing)  # type: ignore[arg-type]


def test_the_window_follows_how_fast_a_client_draws_within_its_bounds(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(clients, "time", clock)
    client = _client(object())
    assert client.window == CLIENT_WINDOW_MIN
    client.sent = 64 * 1024
    client.ack(0)
    for step in range(1, 40):  # draws 4 MiB a second while output keeps coming
        client.sent += 512 * 1024
        clock.now += 0.125
        client.ack(step * 512 * 1024)
    assert client.window == CLIENT_WINDOW_MAX
    for _ in range(40):  # then 128 KiB a second
        client.sent += 16 * 1024
        clock.now += 0.125
        client.ack(client.acked + 16 * 1024)
    assert client.window == CLIENT_WINDOW_MIN


def test_an_idle_client_keeps_its_window(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(clients, "time", clock)
    client = _client(object())
    client.sent = 1000
    client.ack(1000)  # everything drawn: nothing in flight
    clock.now += 60  # a minute later, a keystroke's echo
    client.sent += 10
    client.ack(client.sent)
    assert client.window == CLIENT_WINDOW_MIN
    assert client.rate == 0.0


def _backed_up(hub: hubs.Hub) -> Client:
    client = _client(hub)
    client.acked = 0
    client.buffer += b"x" * CLIENT_HIGH_WATER
    hub.clients.add(client)
    return client


async def test_a_lone_slow_client_is_waited_for_and_not_resynced(monkeypatch):
    monkeypatch.setattr(hubs, "SLOW_CLIENT_SECONDS", 0.01)
    hub = hubs.Hub("no-such-container")
    slow = _backed_up(hub)
    waiting = asyncio.create_task(hub._wait_for_space())
    await asyncio.sleep(0.1)  # ten times the limit for a client that holds others back
    assert not waiting.done()
    assert not slow.resync
    del slow.buffer[: CLIENT_HIGH_WATER // 2]  # it drew some
    hub.space.set()
    await asyncio.wait_for(waiting, 5)
    assert not slow.resync
    assert not slow.stalled


async def test_a_slow_client_holding_back_another_is_resynced(monkeypatch):
    monkeypatch.setattr(hubs, "SLOW_CLIENT_SECONDS", 0.01)
    hub = hubs.Hub("no-such-container")
    slow = _backed_up(hub)
    quick = _client(hub)
    quick.acked = 0
    hub.clients.add(quick)
    await asyncio.wait_for(hub._wait_for_space(), 5)
    assert slow.resync
    assert slow.stalled
    assert not quick.resync


@pytest.mark.parametrize("method", ["input", "resize"])
async def test_a_client_types_and_resizes_through_its_hub(method):
    calls = []

    class Hub:
        async def type_from(self, client, data):
            calls.append(("type", client, data))

        async def size_from(self, client, cols, rows):
            calls.append(("size", client, cols, rows))

    client = _client(Hub())
    if method == "input":
        await client.input(b"ls\r")
        assert calls == [("type", client, b"ls\r")]
    else:
        await client.resize(100, 30)
        assert calls == [("size", client, 100, 30)]
