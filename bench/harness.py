"""The benchmark's own pwd: a daphne server and pool keeper on a temp database, its own
``pwd.instance`` on the engine, a small API client, and clean-up of all of it.

The bench process itself loads Django with the same environment, so it reaches the
same database (to watch the pool fill) and the engine through sessions_app's boundary
modules, like the app does.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
if not PYTHON.exists():
    PYTHON = Path(sys.executable)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Environment:
    """A temp directory, database and instance name; Django set up to use them."""

    def __init__(self) -> None:
        self.instance = f"pwdbench-{uuid.uuid4().hex[:8]}"
        self.tmp = Path(tempfile.mkdtemp(prefix="pwd-bench-"))
        self.db = self.tmp / "db.sqlite3"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "pwd_site.settings",
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": f"sqlite:///{self.db}",
            "PWD_INSTANCE": self.instance,
            "PWD_LOG_LEVEL": "WARNING",
            # The benchmark is one address starting a whole class's sessions, many times.
            "PWD_SESSIONS_PER_IP": "100000/h",
            "PWD_MAX_SESSIONS": "100000",
            "PWD_MAX_TOTAL_NODES": "100000",
            "PWD_MAX_SESSIONS_PER_CLIENT": "100000",
            "PWD_MAX_NODES_PER_CLIENT": "100000",
        }
        os.environ.update({k: self.env[k] for k in ("DATABASE_URL", "PWD_INSTANCE")})
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pwd_site.settings")
        os.environ.setdefault("PWD_LOG_LEVEL", "WARNING")
        import django

        django.setup()
        subprocess.run(
            [str(PYTHON), "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=self.env,
            check=True,
        )

    def cleanup(self) -> None:
        """Remove every container, volume and network of this instance, and the temp dir."""
        from sessions_app import engine

        for _ in range(3):
            try:
                objects = engine.list_objects()
            except engine.EngineError:
                break
            for container in objects.containers:
                with contextlib.suppress(engine.EngineError):
                    engine.remove_node(container["Id"])
            for volume in engine.list_objects().volumes:
                with contextlib.suppress(engine.EngineError):
                    engine.remove_volume(volume["Name"])
            for network in objects.networks:
                with contextlib.suppress(engine.EngineError):
                    engine.remove_network(network["Id"])
            left = engine.list_objects()
            if not (left.containers or left.networks or left.volumes):
                break
            time.sleep(1)
        shutil.rmtree(self.tmp, ignore_errors=True)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


class Server:
    """A daphne server (and, with a pool, a pool keeper) of ``environment``."""

    def __init__(
        self, environment: Environment, pool_size: int, max_nodes: int = 5, prepare: bool = True
    ) -> None:
        self.environment = environment
        self.pool_size = pool_size
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_base = f"ws://127.0.0.1:{self.port}"
        self.env = {
            **environment.env,
            "PWD_POOL_SIZE": str(pool_size),
            "PWD_POOL_PREPARE": "true" if prepare else "false",
            "PWD_MAX_NODES": str(max_nodes),
        }
        self.processes: list[Process] = []
        self.daphne: Process | None = None

    def _spawn(self, name: str, argv: list[str]) -> Process:
        log = self.environment.tmp / f"{name}-{self.port}.log"
        popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def start(self) -> Server:
        self.daphne = self._spawn(
            "daphne",
            [
                str(PYTHON),
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "pwd_site.asgi:application",
            ],
        )
        if self.pool_size:
            self._spawn("pool", [str(PYTHON), "manage.py", "pool", "--interval", "0.2"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.daphne.popen.poll() is not None:
                raise RuntimeError(f"daphne exited:\n{self.daphne.tail()}")
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=2).read()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"daphne did not answer:\n{self.daphne.tail()}")

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def wait_for_pool(self, timeout: float = 120) -> bool:
        """Whether the pool holds ``pool_size`` ready nodes within ``timeout`` seconds."""
        from sessions_app.keeper import wait_until_ready

        return wait_until_ready(self.pool_size, timeout)

    def wait_for_preparation(self, session_id: str, timeout: float = 15) -> bool:
        """Whether the session has a pool node attached ahead (PWD_POOL_PREPARE) within
        ``timeout`` seconds; at once when preparing is off."""
        from sessions_app.models import PoolNode

        if self.env.get("PWD_POOL_PREPARE", "true").lower() in {"0", "false", "no", "off"}:
            return True
        deadline = time.monotonic() + timeout
        prepared = PoolNode.objects.prepared_for(session_id).filter(status=PoolNode.Status.PREPARED)
        while not prepared.exists():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    # --- the API ---------------------------------------------------------------------

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=180) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, raw.decode(errors="replace")

    def create_session(self) -> dict[str, Any]:
        status, body = self.call("POST", "/api/sessions/", {})
        if status != 201:
            raise RuntimeError(f"POST /api/sessions/ gave {status}: {body}")
        return body

    def add_node(self, session_id: str) -> tuple[int, Any]:
        return self.call("POST", f"/api/sessions/{session_id}/nodes/", {})

    def end_session(self, session_id: str) -> None:
        self.call("DELETE", f"/api/sessions/{session_id}/")

    def terminal_url(self, node: dict[str, Any]) -> str:
        return self.ws_base + node["terminal"]


# --- process and machine facts ----------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import channels
    import daphne
    import django
    import websockets

    from sessions_app import engine

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = 0
    with contextlib.suppress(OSError):
        memory = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    engine = engine.client().version()
    load = os.getloadavg()
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(memory / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "docker_engine": engine.get("Version"),
        "docker_api": engine.get("ApiVersion"),
        "node_profile": engine.profile().name,
        "django": django.__version__,
        "channels": channels.__version__,
        "daphne": daphne.__version__,
        "websockets": websockets.__version__,
        "loadavg_at_start": [round(x, 2) for x in load],
    }
