"""Replaying the Play with Docker SDK (pwd-sdk 0.0.12) against a live server: its HTTP
requests byte for byte as docs/compat.md and the PWD fact sheet give them, and its
session websocket."""

from __future__ import annotations

import contextlib
import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import websockets.sync.client
from websockets.exceptions import ConnectionClosed

from tests.live_server import LiveServer, live_server

DOCS = "http://docs.test:8080"  # the embedding page's origin, on PWD_EMBED_ORIGINS
XHR = {"X-Requested-With": "XMLHttpRequest"}


class Reply:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.getheaders()}
        self.body = response.read()

    def json(self) -> Any:
        assert self.body.endswith(b"\n"), self.body
        return json.loads(self.body)

    @property
    def code(self) -> str:
        return json.loads(self.body)["error"]["code"]


class Sdk:
    """What the SDK's XHRs send: credentials (a cookie-less browser here), the
    X-Requested-With header, the docs page's Origin."""

    def __init__(self, url: str, origin: str | None = DOCS) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.origin = origin

    def call(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 180,
    ) -> Reply:
        sent = {**({"Origin": self.origin} if self.origin else {}), **(headers or {})}
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            data = body.encode() if isinstance(body, str) else body
            connection.request(method, path, body=data, headers=sent)
            return Reply(connection.getresponse())
        finally:
            connection.close()

    def json(self, method: str, path: str, data: Any, timeout: float = 180) -> Reply:
        body = data if isinstance(data, str) else json.dumps(data)
        headers = {**XHR, "Content-Type": "application/json"}
        return self.call(method, path, body, headers, timeout)

    def post_root(self, form: str = "session-duration=90m", xhr: bool = True) -> Reply:
        """POST / as the SDK sends it (an urlencoded form)."""
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return self.call("POST", "/", form, {**XHR, **headers} if xhr else headers)

    def new_session(self) -> dict[str, Any]:
        reply = self.post_root()
        assert reply.status == 200, reply.body
        return reply.json()

    def new_instance(self, session_id: str, hostname: str = "node1") -> dict[str, Any]:
        reply = self.json(
            "POST", f"/sessions/{session_id}/instances", {"Hostname": hostname, "ImageName": ""}
        )
        assert reply.status == 200, reply.body
        return reply.json()

    def exec(self, session_id: str, name: str, argv: list[str]) -> int:
        reply = self.json(
            "POST", f"/sessions/{session_id}/instances/{name}/exec", {"command": argv}
        )
        assert reply.status == 200, reply.body
        return reply.json()["status_code"]

    def close(self, session_id: str) -> Reply:
        return self.call("DELETE", f"/sessions/{session_id}", None, XHR)


@contextlib.contextmanager
def compat_server(tmp: Path, **env: str) -> Iterator[LiveServer]:
    """The suite's live server, without a pool, with DOCS as its embedding origin."""
    with live_server(tmp, **{"PWD_POOL_SIZE": "0", "PWD_EMBED_ORIGINS": DOCS, **env}) as live:
        yield live


class PwdSocket:
    """The SDK's session websocket: JSON text frames {"name", "args"}."""

    def __init__(self, url: str, session_id: str, origin: str | None = DOCS) -> None:
        self._stack = contextlib.ExitStack()
        headers = {"Origin": origin} if origin else {}
        self.ws = self._stack.enter_context(
            websockets.sync.client.connect(
                url.replace("http", "ws", 1) + f"/sessions/{session_id}/ws/",
                additional_headers=headers,
                open_timeout=15,
                max_size=None,
            )
        )
        self.messages: list[dict[str, Any]] = []
        self.closed = False

    def send(self, name: str, args: list[Any]) -> None:
        self.ws.send(json.dumps({"name": name, "args": args}))

    def until(self, predicate, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                raise AssertionError(f"timed out; closed={self.closed} last={self.messages[-6:]}")
            try:
                frame = self.ws.recv(timeout=min(left, 1.0))
            except TimeoutError:
                continue
            except ConnectionClosed:
                self.closed = True
                continue
            assert isinstance(frame, str), frame
            self.messages.append(json.loads(frame))

    def named(self, name: str) -> list[list[Any]]:
        return [m["args"] for m in self.messages if m["name"] == name]

    def output(self, instance: str) -> str:
        return "".join(
            args[1] for args in self.named("instance terminal out") if args[0] == instance
        )

    def until_output(self, instance: str, needle: str, within: float = 60.0) -> None:
        self.until(lambda s: needle in s.output(instance), within)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()
