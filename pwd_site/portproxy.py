"""The port proxy: HTTP and websockets for ``<token>-<node>-<port>.<PWD_PORTS_DOMAIN>``.

:class:`PortRouter` sits in front of the whole ASGI application and sends every request
whose Host is under PWD_PORTS_DOMAIN here; the app itself never sees them. A request
goes to the node's address that :func:`sessions_app.ports.route` finds for the name,
streamed both ways (httpx for HTTP, websockets for websockets), with the browser's Host
kept, so a web app served at ``/`` works unmodified. Errors are JSON in the API's shape:
404 ``port_not_found`` for a name no running node of an active session answers to,
502 ``port_closed`` when nothing listens on the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from django.conf import settings
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import WebSocketException

from sessions_app import ports

log = logging.getLogger(__name__)

# Headers that belong to one connection, never forwarded (RFC 9110 7.6.1), and the ones a
# proxy sets itself.
HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"host",
    b"x-forwarded-for",
    b"x-forwarded-host",
    b"x-forwarded-proto",
}
# Handshake headers the websockets client writes itself.
WS_OWN = {b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions"}
CONNECT_TIMEOUT = 5.0

_client: httpx.AsyncClient | None = None


def client() -> httpx.AsyncClient:
    """One connection pool to the nodes per process: no read timeout (a page may stream
    for as long as it likes), a bounded wait to connect."""
    global _client
    if _client is None:
        _client = httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT, pool=CONNECT_TIMEOUT),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),
            follow_redirects=False,
            trust_env=False,
        )
        # Only what the browser sent: no Accept-Encoding (the body is passed on as it
        # comes) or User-Agent of httpx's own.
        for name in ("accept", "accept-encoding", "user-agent"):
            del _client.headers[name]
    return _client


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _forwarded(scope: dict[str, Any], host: str) -> list[tuple[bytes, bytes]]:
    """The request's headers for the node, hop-by-hop ones replaced by ours."""
    headers = [(k, v) for k, v in scope.get("headers", []) if k not in HOP_BY_HOP]
    client_addr = (scope.get("client") or ["", 0])[0]
    headers += [
        (b"host", host.encode("latin-1")),
        (b"x-forwarded-for", str(client_addr).encode()),
        (b"x-forwarded-host", host.encode("latin-1")),
        # What the browser used: behind a TLS proxy the connection here is plain HTTP.
        (b"x-forwarded-proto", settings.PWD_PORTS_SCHEME.encode()),
    ]
    return headers


def cookie_allowed(set_cookie: bytes, domain: str) -> bool:
    """Whether a node may set this cookie: only on its own host name. A ``Domain``
    reaching wider (the ports domain, so other sessions' port URLs, or the app's) is
    dropped: cookie tossing onto other sites stops here."""
    for attribute in set_cookie.decode("latin-1").split(";")[1:]:
        key, _, value = attribute.partition("=")
        if key.strip().lower() == "domain" and value.strip().strip(".").lower() != domain:
            return False
    return True


async def _error(send: Any, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


NOT_FOUND = ("port_not_found", "No running node of an active session answers to this address.")
CLOSED = ("port_closed", "Nothing answers on this port of the node (yet).")


async def _target(scope: dict[str, Any]) -> tuple[str, ports.PortName, ports.Route] | None:
    host = _header(scope, b"host") or ""
    name = ports.parse_host(host)
    if name is None:
        return None
    try:
        return host, name, await ports.route(name)
    except ports.PortNotFound:
        return None


async def proxy_http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    found = await _target(scope)
    if found is None:
        await _error(send, 404, *NOT_FOUND)
        return
    host, name, route = found
    first = await receive()
    if first["type"] == "http.disconnect":
        return
    has_body = _header(scope, b"content-length") is not None or bool(
        first.get("body") or first.get("more_body")
    )

    async def body() -> AsyncIterator[bytes]:
        message = first
        while True:
            if message["type"] == "http.disconnect":
                raise ConnectionAbortedError("the client went away")
            if message.get("body"):
                yield message["body"]
            if not message.get("more_body"):
                return
            message = await receive()

    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string") or b""
    url = httpx.URL(
        scheme="http",
        host=route.address,
        port=name.port,
        raw_path=path + (b"?" + query if query else b""),
    )
    request = client().build_request(
        scope["method"], url, headers=_forwarded(scope, host), content=body() if has_body else None
    )
    try:
        response = await client().send(request, stream=True)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
        if await ports.still_there(name):
            await _error(send, 502, *CLOSED)
        else:
            await _error(send, 404, *NOT_FOUND)
        return
    except httpx.HTTPError as exc:
        await _error(send, 502, "port_failed", f"The node's server did not answer: {exc}.")
        return
    try:
        await _stream_response(response, ports.domain_of(host), receive, send)
    finally:
        await response.aclose()


async def _stream_response(response: httpx.Response, domain: str, receive: Any, send: Any) -> None:
    headers = [
        (k, v)
        for k, v in response.headers.raw
        if k.lower() not in HOP_BY_HOP and (k.lower() != b"set-cookie" or cookie_allowed(v, domain))
    ]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})

    async def relay() -> None:
        # As the node sends it: a chunk size would hold back a stream of small writes.
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def client_gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    relaying = asyncio.ensure_future(relay())
    watching = asyncio.ensure_future(client_gone())
    try:
        done, _ = await asyncio.wait({relaying, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (relaying, watching):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await relaying
    if watching not in done:
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def proxy_websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    found = await _target(scope)
    if found is None:
        await send({"type": "websocket.close", "code": 4404})
        return
    host, name, route = found
    path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    query = (scope.get("query_string") or b"").decode("latin-1")
    # The browser's Host goes in the URI (the client writes it from there); the
    # connection goes to the node's address instead.
    uri = f"ws://{host}{path}" + (f"?{query}" if query else "")
    skip = WS_OWN | {b"host", b"origin", b"sec-websocket-protocol", b"user-agent"}
    headers = [
        (k.decode("latin-1"), v.decode("latin-1"))
        for k, v in _forwarded(scope, host)
        if k not in skip
    ]
    try:
        upstream = await ws_connect(
            uri,
            host=route.address,
            port=name.port,
            proxy=None,
            additional_headers=headers + [("User-Agent", _header(scope, b"user-agent") or "")],
            origin=_header(scope, b"origin"),
            subprotocols=scope.get("subprotocols") or None,
            open_timeout=CONNECT_TIMEOUT,
            max_size=None,
            compression=None,
            ping_interval=None,
            user_agent_header=None,
        )
    except (OSError, TimeoutError, WebSocketException) as exc:
        log.info("port websocket to %s:%s refused: %s", name.node, name.port, exc)
        await send({"type": "websocket.close", "code": 4502})
        return
    async with upstream:
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        await _relay_websocket(upstream, receive, send)


async def _relay_websocket(upstream: Any, receive: Any, send: Any) -> None:
    async def down() -> None:
        async for message in upstream:
            key = "bytes" if isinstance(message, bytes) else "text"
            await send({"type": "websocket.send", key: message})
        await send({"type": "websocket.close", "code": upstream.close_code or 1000})

    async def up() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await upstream.send(message["bytes"])
            elif message.get("text") is not None:
                await upstream.send(message["text"])

    tasks = {asyncio.ensure_future(down()), asyncio.ensure_future(up())}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketException):
                await task


class PortRouter:
    """Requests for a host under PWD_PORTS_DOMAIN go to the proxy, the rest to ``app``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in {"http", "websocket"}:
            server = scope.get("server")
            if server and server[1]:
                ports.learn_server_port(int(server[1]))
            if ports.is_port_host(_header(scope, b"host")):
                proxy = proxy_http if scope["type"] == "http" else proxy_websocket
                return await proxy(scope, receive, send)
        return await self.app(scope, receive, send)
