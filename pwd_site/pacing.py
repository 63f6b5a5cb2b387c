"""Backpressure on HTTP answers under daphne: the app's ``send`` waits for a slow client.

daphne writes each ``http.response.body`` to Twisted's transport at once, and the
transport buffers whatever the client has not taken yet, without bound: a 100 MiB
download to a slow client was 100 MiB of the server's memory. Twisted tells a
registered push producer when its buffer is full and when it has drained;
:class:`Pace` is that producer for one request (registered by
:class:`pwd_site.bodylimit.LimitedRequest` when the answer starts), and :func:`wait`,
awaited after each body message (:class:`pwd_site.bodylimit.BodyLimit`), holds the app
until the client has caught up. Requests are found by their client address and port
(the ASGI scope's ``client``), which one connection has at a time.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

# What Twisted may hold for a client before the app waits.
HIGH_WATER = 1 << 20
_paces: weakref.WeakValueDictionary[tuple[str, int], Pace] = weakref.WeakValueDictionary()


class Pace:
    """Twisted's push-producer interface over an event the app can wait on."""

    def __init__(self) -> None:
        self._ready = asyncio.Event()
        self._ready.set()

    def pauseProducing(self) -> None:  # noqa: N802 (Twisted's interface)
        self._ready.clear()

    def resumeProducing(self) -> None:  # noqa: N802
        self._ready.set()

    def stopProducing(self) -> None:  # noqa: N802
        # The connection is going: the app must not wait for it (daphne drops the rest).
        self._ready.set()

    async def wait(self) -> None:
        await self._ready.wait()


def key(client: Any) -> tuple[str, int] | None:
    """The registry key of a scope's ``client`` (``[host, port]``), or None."""
    if isinstance(client, list | tuple) and len(client) == 2:
        return str(client[0]), int(client[1])
    return None


def watch(request: Any) -> Pace | None:
    """Register a Pace as ``request``'s producer (a Twisted request being answered)."""
    host, port = getattr(request.client, "host", None), getattr(request.client, "port", None)
    peer = key([host, port]) if host is not None and port is not None else None
    if peer is None or request.producer is not None or request.channel is None:
        return None
    pace = Pace()
    # Twisted pauses at 64 KiB and resumes only once all is sent: a larger mark keeps
    # the socket busy while the app makes the next chunk, still a bounded amount.
    transport = request.channel.transport
    transport.bufferSize = max(getattr(transport, "bufferSize", 0), HIGH_WATER)
    request.registerProducer(pace, True)
    if getattr(request.channel, "_waitingForTransport", False):
        pace.pauseProducing()
    _paces[peer] = pace
    return pace


def unwatch(request: Any, pace: Pace | None) -> None:
    """Take ``pace`` off ``request`` before Twisted finishes it."""
    if pace is not None and request.producer is pace:
        request.unregisterProducer()
        pace.stopProducing()


async def wait(scope: dict[str, Any]) -> None:
    """Return once the client of ``scope`` has taken what was sent so far."""
    peer = key(scope.get("client"))
    pace = _paces.get(peer) if peer is not None else None
    if pace is not None:
        await pace.wait()
