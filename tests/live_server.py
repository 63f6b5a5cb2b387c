"""A real pwd server (daphne) in a subprocess, for tests that need separate processes.

It gets its own SQLite file and this test run's PWD_INSTANCE, so whatever it creates on
the engine is removed with the rest of the run's objects.
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class LiveServer:
    url: str
    env: dict[str, str]
    log: Path

    def request(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        """``(status, JSON body or None)`` of one HTTP call to the server."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw, status = response.read(), response.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        return status, json.loads(raw) if raw else None

    def manage(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run ``manage.py`` with the server's environment (its database, its layer)."""
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def python(self, code: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run ``code`` after django.setup() in a separate process."""
        prelude = "import django; django.setup()\n"
        return subprocess.run(
            [sys.executable, "-c", prelude + code],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def live_server(tmp_path: Path, **extra_env: str) -> Iterator[LiveServer]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "pwd_site.settings",
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "PWD_INSTANCE": settings.PWD_INSTANCE,
        **extra_env,
    }
    port = free_port()
    server = LiveServer(f"http://127.0.0.1:{port}", env, tmp_path / "daphne.log")
    migrated = server.manage("migrate", "--noinput", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr
    with server.log.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pwd_site.serve", "-b", "127.0.0.1", "-p", str(port)]
            + ["pwd_site.asgi:application"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{server.url}/healthz", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"daphne did not start:\n{server.log.read_text()}") from None
                time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
