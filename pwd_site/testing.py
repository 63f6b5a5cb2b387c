"""A real pwd for tests and benchmarks, the way channels ships ``channels.testing``.

:func:`live_server` starts ``python -m pwd_site.serve`` (daphne, as in production) on a
free port of 127.0.0.1, with a database and a ``PWD_INSTANCE`` label of its own, and at
the end stops it and removes everything it made::

    from pwd_site.testing import live_server

    with live_server(PWD_POOL_SIZE="0") as server:
        status, body = server.request("POST", "/api/sessions/")

The parts, for callers that need more than one server on one state (the bench):

- :class:`Instance` is a server's state: a directory (a temp one unless given), a
  migrated SQLite database in it (or a given ``DATABASE_URL``) and a fresh label value
  ``<prefix>-<8 hex>``. Closing it removes every container, volume, network and node
  disk labelled with it, then the temp directory.
- :class:`LiveServer` is one daphne of an instance on its own port: :meth:`~LiveServer.start`
  returns once ``/healthz`` answers, :meth:`~LiveServer.stop` sends SIGTERM (then SIGKILL),
  :meth:`~LiveServer.kill` sends SIGKILL (a crash, for the fault tests) and ``start``
  brings it back on the same port. Processes started with :meth:`~LiveServer.spawn` (a
  ``manage.py pool`` keeper) stop with it. ``request``, ``manage`` and ``python`` talk to
  it or run next to it with its environment.

The engine is listed and cleaned by a short child process with the instance's
environment (:mod:`pwd_site.instance_objects`), so it sees what the server sees (its
``PWD_INSTANCE``, its ``DOCKER_HOST``) and the caller's Django settings are never
switched under it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from pwd_site.instance_objects import InstanceObjects

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


class LeftOnEngine(RuntimeError):
    """Objects labelled with an instance were still on the engine after its removal."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Instance:
    """A directory, a migrated database and a ``PWD_INSTANCE`` value of their own.

    ``directory``: where the database and the logs go; a temp directory (removed at
    close) when None. ``env``: extra environment for every process of the instance
    (``DATABASE_URL`` there uses that database instead of a new SQLite file; settings
    that say where the engine is, like ``DOCKER_HOST``, belong here so that clean-up
    looks at the same engine). Raises RuntimeError when the migration fails.
    """

    def __init__(
        self,
        directory: Path | None = None,
        env: Mapping[str, str] | None = None,
        prefix: str = "pwdlive",
    ) -> None:
        extra = dict(env or {})
        if "PWD_INSTANCE" in extra:
            raise ValueError("an instance labels with a value of its own; give a prefix")
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.owns_directory = directory is None
        self.directory = (
            Path(tempfile.mkdtemp(prefix=f"{self.name}-")) if directory is None else directory
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        # The SQLite file, when the environment does not name a database.
        self.database = None if "DATABASE_URL" in extra else self.directory / "db.sqlite3"
        self.env: dict[str, str] = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "pwd_site.settings",
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": f"sqlite:///{self.directory / 'db.sqlite3'}",
            **extra,
            "PWD_INSTANCE": self.name,
        }
        self.closed = False
        migrated = run_python(["manage.py", "migrate", "--noinput", "-v", "0"], self.env)
        if migrated.returncode != 0:
            self._remove_directory()
            raise RuntimeError(f"migrate failed for {self.name}:\n{migrated.stderr}")

    def objects(self) -> InstanceObjects:
        """What the engine holds labelled with this instance. Raises RuntimeError when
        the engine cannot be listed."""
        listed = run_python(["-m", "pwd_site.instance_objects", "list"], self.env)
        if listed.returncode != 0:
            raise RuntimeError(f"could not list {self.name} on the engine:\n{listed.stderr}")
        return InstanceObjects(**json.loads(listed.stdout))

    def remove_objects(self) -> InstanceObjects:
        """Remove everything labelled with this instance; returns what is still there
        (empty when all went; unknown, so empty, when the engine does not answer)."""
        removed = run_python(["-m", "pwd_site.instance_objects", "remove"], self.env, timeout=300)
        if removed.returncode != 0:
            print(f"pwd_site.testing: clean-up of {self.name}:\n{removed.stderr}", file=sys.stderr)
            return InstanceObjects()
        return InstanceObjects(**json.loads(removed.stdout))

    def close(self, strict: bool = True) -> None:
        """Remove the instance's engine objects and its temp directory (once).

        Raises LeftOnEngine when something stayed on the engine and ``strict``;
        otherwise says so on stderr.
        """
        if self.closed:
            return
        self.closed = True
        left = self.remove_objects()
        self._remove_directory()
        if left:
            message = f"left on the engine by {self.name}: {left.names()}"
            if strict:
                raise LeftOnEngine(message)
            print(f"pwd_site.testing: {message}", file=sys.stderr)

    def _remove_directory(self) -> None:
        if self.owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Instance:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # A failure in the block is the news; what it left is only reported.
        self.close(strict=exc_type is None)


@dataclass
class Process:
    """A child process and the file its output goes to."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, within: float = 15) -> None:
        """SIGTERM, then SIGKILL when it has not exited within ``within`` seconds."""
        if self.running():
            self.popen.terminate()
            try:
                self.popen.wait(timeout=within)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.running():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=15)

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


class LiveServer:
    """``python -m pwd_site.serve`` for ``instance`` on a free port (the same one across
    restarts). ``env`` adds to the instance's environment; ``env`` stays a dict that can
    be changed before :meth:`start`."""

    def __init__(self, instance: Instance, **env: str) -> None:
        self.instance = instance
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.env: dict[str, str] = {**instance.env, **env}
        self.log = instance.directory / f"daphne-{self.port}.log"
        self.daphne: Process | None = None
        self.others: list[Process] = []

    @property
    def processes(self) -> list[Process]:
        """Daphne and every process spawned next to it."""
        return ([self.daphne] if self.daphne else []) + self.others

    def start(self, within: float = 60) -> LiveServer:
        """Start daphne; returns once ``/healthz`` answers. Raises RuntimeError with the
        log's end when it exits or does not answer within ``within`` seconds."""
        if self.daphne is not None and self.daphne.running():
            raise RuntimeError("the server is running already")
        self.daphne = self._popen(
            "daphne",
            [PYTHON, "-m", "pwd_site.serve", "-b", "127.0.0.1", "-p", str(self.port)]
            + ["pwd_site.asgi:application"],
            self.log,
        )
        deadline = time.monotonic() + within
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=2).close()
                return self
            except OSError:
                if not self.daphne.running() or time.monotonic() > deadline:
                    self.daphne.stop()
                    raise RuntimeError(f"daphne did not start:\n{self.daphne.tail(60)}") from None
                time.sleep(0.1)

    def spawn(self, name: str, args: list[str]) -> Process:
        """Start ``python <args>`` (e.g. ``manage.py pool``) with the server's
        environment; it is stopped with the server. Its output goes to ``<name>-<port>.log``."""
        process = self._popen(
            name, [PYTHON, *args], self.instance.directory / f"{name}-{self.port}.log"
        )
        self.others.append(process)
        return process

    def _popen(self, name: str, argv: list[str], log: Path) -> Process:
        with log.open("ab") as out:
            popen = subprocess.Popen(
                argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return Process(name, popen, log)

    def kill(self) -> None:
        """SIGKILL daphne (a crash); :meth:`start` brings it back on the same port."""
        if self.daphne is not None:
            self.daphne.kill()

    def stop(self) -> None:
        """Stop every process of the server, the spawned ones first (SIGTERM, then SIGKILL)."""
        for process in reversed(self.processes):
            process.stop()
        self.others = []

    def restart(self, within: float = 60) -> LiveServer:
        """Stop daphne gracefully and start it again on the same port."""
        if self.daphne is not None:
            self.daphne.stop()
        return self.start(within)

    def objects(self) -> InstanceObjects:
        """What the engine holds labelled with the server's instance."""
        return self.instance.objects()

    def request(
        self, method: str, path: str, body: object = None, timeout: float = 60
    ) -> tuple[int, Any]:
        """``(status, body)`` of one HTTP call: the JSON body, None when empty, the text
        when it is not JSON."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw, status = response.read(), response.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        if not raw:
            return status, None
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def manage(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``manage.py`` with the server's environment (its database, its layer)."""
        return run_python(["manage.py", *args], self.env, timeout)

    def python(self, code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``code`` after django.setup() in a process with the server's environment."""
        return run_python(["-c", "import django; django.setup()\n" + code], self.env, timeout)

    def __enter__(self) -> LiveServer:
        return self if self.daphne is not None and self.daphne.running() else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None and issubclass(exc_type, Exception):
            print(self.describe(), file=sys.stderr)
        self.stop()

    def describe(self) -> str:
        """What a human reading a failure needs: the end of each log, the engine's objects."""
        parts = [
            f"--- {p.name} (pid {p.pid}) log, last lines\n{p.tail(40)}" for p in self.processes
        ]
        try:
            objects = self.objects()
            listed = [f"{c['Names'][0]} {c.get('Status')}" for c in objects.containers]
            listed += [str(o.get("Name")) for o in objects.networks + objects.volumes]
        except RuntimeError as exc:
            listed = [str(exc)]
        parts.append(f"--- on the engine as {self.instance.name}\n" + "\n".join(listed))
        return "\n".join(parts)


@contextlib.contextmanager
def live_server(
    directory: Path | None = None, prefix: str = "pwdlive", **env: str
) -> Iterator[LiveServer]:
    """A started :class:`LiveServer` on an :class:`Instance` of its own (see there for
    ``directory`` and ``env``); at the end the server is stopped and the instance closed."""
    with Instance(directory, env, prefix) as instance, LiveServer(instance) as server:
        yield server


def run_python(
    args: list[str], env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python <args>`` in the project's folder with ``env``, its output captured."""
    return subprocess.run(
        [PYTHON, *args], env=dict(env), cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
