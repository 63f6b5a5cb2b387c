"""Helpers for the fault tests: the live server without a pool (it can be killed and
restarted on the same port), a terminal client over a real websocket, and a private
redis-server."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import websockets.sync.client
from websockets.exceptions import ConnectionClosed

from tests.conftest import missing
from tests.live_server import LiveServer, free_port, live_server


@contextlib.contextmanager
def restartable_server(tmp_path: Path, **extra_env: str) -> Iterator[LiveServer]:
    """The suite's live server without a warm pool unless asked; it can be killed
    (``server.kill()``) and started again on the same port (``server.start()``)."""
    with live_server(tmp_path, **{"PWD_POOL_SIZE": "0", **extra_env}) as server:
        yield server


class WsTerminal:
    """A node terminal over a real websocket (what a browser tab does)."""

    def __init__(self, server: LiveServer, path: str) -> None:
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(
            websockets.sync.client.connect(
                server.url.replace("http", "ws", 1) + path, open_timeout=15, max_size=None
            )
        )
        self.output = bytearray()
        self.messages: list[dict] = []
        self.closed = False

    def until(self, predicate, within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                raise AssertionError(
                    f"timed out; closed={self.closed} messages={self.messages[-5:]} "
                    f"output tail={self.text[-400:]!r}"
                )
            try:
                frame = self.ws.recv(timeout=min(left, 1.0))
            except TimeoutError:
                continue
            except ConnectionClosed:
                self.closed = True
                continue
            if isinstance(frame, bytes):
                self.output += frame
            else:
                self.messages.append(json.loads(frame))

    def connected(self) -> None:
        self.until(lambda t: any(m.get("state") == "connected" for m in t.messages))

    def type(self, text: str) -> None:
        self.ws.send(json.dumps({"type": "input", "data": text}))

    def until_text(self, needle: str, within: float = 20.0) -> None:
        self.until(lambda t: needle in t.text, within)

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()


class RedisServer:
    """A redis-server of the test's own on a free port of 127.0.0.1 (never the shared one)."""

    def __init__(self, tmp_path: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server is not installed (make test installs it)")
        self.binary = binary
        self.port = free_port()
        self.dir = tmp_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, within: float = 10) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import socket

        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
