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
``413 body_too_large`` the same way (sessions_app/api.py). An upload into a node
(``POST .../files/``) has its own limit instead, PWD_MAX_UPLOAD and room for the
multipart framing; no other request's limit changes.

Past 100 KB Twisted keeps the body in a temporary file, and daphne would queue all of it
as 8 KiB messages at once: a 100 MiB upload, 100 MiB of RSS. :class:`LimitedRequest`
hands daphne :class:`BodyPiece` descriptors (a place in that file) instead, and
:class:`BodyLimit` reads each one when the app asks for it, so the server's memory stays
flat whatever the body's size. Twisted's own parsing of form bodies (all of a multipart
body in memory) is off: Django parses them, from its spooled copy.
"""

import io
import logging
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

from daphne.http_protocol import WebRequest
from django.conf import settings

from pwd_site import pacing
from pwd_site.security import standalone_headers
from sessions_app.errors import error_response

log = logging.getLogger(__name__)

# After the answer, the rest of the body is read and dropped for this long, so that the
# client reads the 413 instead of a connection reset (RFC 9112, section 9.6).
LINGER = 5.0

# The bytes of a spooled body the app gets in one message.
PIECE = 1 << 20
# An upload's body may pass PWD_MAX_UPLOAD by this much: boundaries and part headers.
UPLOAD_FRAMING = 1 << 20
# The native files route, and the Play with Docker one (pwd_compat) that goes onto it.
_UPLOAD_PATH = re.compile(
    r"^(/api/sessions/[^/]+/nodes/[^/]+/files/|/sessions/[^/]+/instances/[^/]+/uploads/?)$"
)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def body_limit(method: str, path: str) -> int:
    """The largest body of a request: PWD_MAX_BODY, or an upload's own limit."""
    if method.upper() == "POST" and _UPLOAD_PATH.match(path.split("?", 1)[0]):
        return settings.PWD_MAX_UPLOAD + UPLOAD_FRAMING
    return settings.PWD_MAX_BODY


class BodyPiece:
    """``length`` bytes at ``offset`` of a spooled body: what daphne queues instead of
    the bytes themselves (see :class:`LimitedRequest`)."""

    __slots__ = ("file", "length", "offset")

    def __init__(self, file: Any, offset: int, length: int) -> None:
        self.file, self.offset, self.length = file, offset, length

    def __len__(self) -> int:
        return self.length

    def read(self) -> bytes:
        """The bytes; OSError or ValueError once the file is closed (the client left)."""
        return os.pread(self.file.fileno(), self.length, self.offset)


class _SpooledBody:
    """Twisted's body file as daphne reads it: each read a BodyPiece, nothing loaded.

    Pieces are at least PIECE bytes (daphne asks for 8 KiB), so the app reads a 100 MiB
    body in a hundred messages, not thirteen thousand; a short one is the last.
    """

    def __init__(self, file: Any) -> None:
        file.flush()
        self.file = file
        self.size = os.fstat(file.fileno()).st_size
        self.offset = 0

    @property
    def closed(self) -> bool:
        return self.file.closed

    def seek(self, offset: int, whence: int = 0) -> int:
        self.offset = {0: offset, 1: self.offset + offset, 2: self.size + offset}[whence]
        return self.offset

    def tell(self) -> int:
        return self.offset

    def read(self, size: int = -1) -> BodyPiece:
        left = self.size - self.offset
        piece = BodyPiece(self.file, self.offset, left if size < 0 else min(max(size, PIECE), left))
        self.offset += piece.length
        return piece

    def close(self) -> None:
        self.file.close()


def refusal(limit: int | None = None) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers and JSON body of the 413 answer."""
    limit = settings.PWD_MAX_BODY if limit is None else limit
    response = error_response(413, message=f"The request body is larger than {limit} bytes.")
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
    """ASGI middleware: an HTTP body over its limit (:func:`body_limit`) gets 413 and is
    not passed on. Reads the BodyPiece messages of :class:`LimitedRequest` as the app
    asks for them."""

    def __init__(self, application: Callable[..., Awaitable[None]]) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.application(scope, receive, send)
        limit = body_limit(scope.get("method", ""), scope.get("path", ""))
        if declared_length(scope.get("headers", [])) > limit:
            return await _send_refusal(send, limit)
        received = 0
        over = started = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                body = message.get("body", b"")
                if isinstance(body, BodyPiece):
                    try:
                        message = {**message, "body": body.read()}
                    except (OSError, ValueError):
                        return {"type": "http.disconnect"}
                received += len(body)
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
            if message["type"] == "http.response.body" and message.get("more_body"):
                await pacing.wait(scope)  # a slow client holds the app, not our memory

        await self.application(scope, counting_receive, guarded_send)
        if over and not started:
            await _send_refusal(send, limit)


async def _send_refusal(send: Send, limit: int) -> None:
    headers, body = refusal(limit)
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class LimitedRequest(WebRequest):
    """daphne's request, refusing a body over its limit while it is still arriving, and
    passing a spooled body on by reference."""

    _received = 0
    _refused = False
    _linger: Any = None
    _limit = 0
    _pace: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parsePOSTFormSubmission = False

    def gotLength(self, length: int | None) -> None:
        # The request line is read by now; the request learns it only at the end.
        channel = self.channel
        self._limit = body_limit(
            getattr(channel, "_command", b"").decode("latin-1"),
            getattr(channel, "_path", b"").decode("latin-1"),
        )
        if length is not None and length > self._limit:
            self.content = io.BytesIO()
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > self._limit:
            self._refuse()
            return
        super().handleContentChunk(data)

    def process(self) -> Any:
        # A websocket upgrade hands its bytes on itself; only plain requests are spooled.
        if not isinstance(self.content, io.BytesIO) and not self.requestHeaders.hasHeader(
            b"Upgrade"
        ):
            self.content = _SpooledBody(self.content)
        return super().process()

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self._refused:
            super().requestReceived(command, path, version)

    def handle_reply(self, message: dict[str, Any]) -> None:
        if message.get("type") == "http.response.start" and self._pace is None:
            self._pace = pacing.watch(self)
        super().handle_reply(message)

    def finish(self) -> None:
        pacing.unwatch(self, self._pace)
        super().finish()

    def connectionLost(self, reason: Any) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        pacing.unwatch(self, self._pace)
        super().connectionLost(reason)

    def _refuse(self) -> None:
        self._refused = True
        # No "100 Continue" after the answer: the client must not send the body at all.
        self.requestHeaders.removeHeader(b"Expect")
        channel = self.channel
        # Whatever else arrives on this connection is dropped unread.
        channel.dataReceived = lambda data: None
        headers, body = refusal(self._limit)
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
            self._limit,
            getattr(peer, "host", peer),
        )
