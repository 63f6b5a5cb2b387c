"""Request bodies over PWD_MAX_BODY are refused with 413 before they are read.

The refusal has to happen where the bytes arrive. Twisted, under daphne, collects the
whole body (in a temporary file past 100 KB) before daphne hands any of it to the
application, and daphne then queues all of it in memory at once: a 512 MiB upload cost
512 MiB of disk and of RSS whatever the app did with it. :class:`LimitedRequest`
(installed by ``python -m pwd_site.serve``) therefore answers as soon as the headers
declare too much, or as soon as a chunked body's running total passes the limit, and
throws the rest away unread. :class:`BodyLimit` does the same at the ASGI level, for an
ASGI server that streams the body to the app, so Django never spools more than the limit.

Bodies under the limit go on as before; the API's own, lower cap on its JSON answers
``413 body_too_large`` the same way (sessions_app/api.py).
"""

import io
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from daphne.http_protocol import WebRequest
from django.conf import settings

from pwd_site.security import standalone_headers
from sessions_app.errors import error_response

log = logging.getLogger(__name__)

# After the answer, the rest of the body is read and dropped for this long, so that the
# client reads the 413 instead of a connection reset (RFC 9112, section 9.6).
LINGER = 5.0

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def refusal() -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers and JSON body of the 413 answer."""
    response = error_response(
        413, message=f"The request body is larger than {settings.PWD_MAX_BODY} bytes."
    )
    headers = {
        **dict(response.items()),
        **standalone_headers(),
        "Content-Length": str(len(response.content)),
    }
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()], (
        response.content
    )


def declared_length(headers: list[tuple[bytes, bytes]]) -> int:
    """The Content-Length of ASGI ``headers``; 0 when none is given (or it is garbage)."""
    for name, value in headers:
        if name.lower() == b"content-length" and value.strip().isdigit():
            return int(value)
    return 0


class BodyLimit:
    """ASGI middleware: an HTTP body over PWD_MAX_BODY gets 413 and is not passed on."""

    def __init__(self, application: Callable[..., Awaitable[None]]) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.application(scope, receive, send)
        limit = settings.PWD_MAX_BODY
        if declared_length(scope.get("headers", [])) > limit:
            return await _send_refusal(send)
        received = 0
        over = started = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # To the app the client has gone: Django drops what it spooled.
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started
            if over and not started:
                return  # the 413 answers instead
            started = True
            await send(message)

        await self.application(scope, counting_receive, guarded_send)
        if over and not started:
            await _send_refusal(send)


async def _send_refusal(send: Send) -> None:
    headers, body = refusal()
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class LimitedRequest(WebRequest):
    """daphne's request, refusing a body over PWD_MAX_BODY while it is still arriving."""

    _received = 0
    _refused = False
    _linger: Any = None

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > settings.PWD_MAX_BODY:
            self.content = io.BytesIO()
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > settings.PWD_MAX_BODY:
            self._refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self._refused:
            super().requestReceived(command, path, version)

    def connectionLost(self, reason: Any) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        super().connectionLost(reason)

    def _refuse(self) -> None:
        self._refused = True
        # No "100 Continue" after the answer: the client must not send the body at all.
        self.requestHeaders.removeHeader(b"Expect")
        channel = self.channel
        # Whatever else arrives on this connection is dropped unread.
        channel.dataReceived = lambda data: None
        headers, body = refusal()
        head = [b"HTTP/1.1 413 Content Too Large", *(k + b": " + v for k, v in headers)]
        transport = channel.transport
        transport.write(b"\r\n".join([*head, b"Connection: close", b"", b""]) + body)
        # Half-close: the answer and a FIN go out, the client may finish sending (or
        # stop, having read the answer); after LINGER the connection is cut.
        getattr(transport, "loseWriteConnection", transport.loseConnection)()
        self._linger = channel.callLater(LINGER, transport.abortConnection)
        peer = transport.getPeer()
        log.info(
            "refused a request body over %d bytes from %s",
            settings.PWD_MAX_BODY,
            getattr(peer, "host", peer),
        )
