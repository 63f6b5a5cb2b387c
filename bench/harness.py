"""The benchmark's own pwd: :mod:`pwd_site.testing`'s live server (the one the tests
use) on a temp database and its own ``pwd.instance``, with a pool keeper next to it, a
small API client, and clean-up of all of it.

The bench process itself loads Django with the same environment, so it reaches the
same database (to watch the pool fill) and the engine through sessions_app's boundary
modules, like the app does.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from pathlib import Path
from typing import Any

from pwd_site import testing

ROOT = testing.ROOT
PYTHON = Path(testing.PYTHON)
free_port = testing.free_port
Process = testing.Process


class Environment:
    """The bench's :class:`pwd_site.testing.Instance` (a temp directory and database, a
    ``pwdbench-<hex>`` label), with Django set up in this process to use them."""

    def __init__(self) -> None:
        self.state = testing.Instance(
            env={
                "PWD_LOG_LEVEL": "WARNING",
                # The benchmark is one address starting a whole class's sessions, many times.
                "PWD_SESSIONS_PER_IP": "100000/h",
                "PWD_MAX_SESSIONS": "100000",
                "PWD_MAX_TOTAL_NODES": "100000",
                "PWD_MAX_SESSIONS_PER_CLIENT": "100000",
                "PWD_MAX_NODES_PER_CLIENT": "100000",
            },
            prefix="pwdbench",
        )
        self.instance = self.state.name
        self.tmp = self.state.directory
        self.db = self.state.database
        self.env = self.state.env
        os.environ.update({k: self.env[k] for k in ("DATABASE_URL", "PWD_INSTANCE")})
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pwd_site.settings")
        os.environ.setdefault("PWD_LOG_LEVEL", "WARNING")
        import django

        django.setup()

    def cleanup(self) -> None:
        """Remove every container, volume, network and node disk of this instance, and
        the temp directory; what could not be removed is reported on stderr."""
        self.state.close(strict=False)


class Server(testing.LiveServer):
    """A daphne server (and, with a pool, a pool keeper) of ``environment``."""

    def __init__(
        self, environment: Environment, pool_size: int, max_nodes: int = 5, prepare: bool = True
    ) -> None:
        super().__init__(
            environment.state,
            PWD_POOL_SIZE=str(pool_size),
            PWD_POOL_PREPARE="true" if prepare else "false",
            PWD_MAX_NODES=str(max_nodes),
        )
        self.environment = environment
        self.pool_size = pool_size
        self.base = self.url
        self.ws_base = self.ws_url

    def start(self, within: float = 60) -> Server:
        super().start(within)
        if self.pool_size:
            self.spawn("pool", ["manage.py", "pool", "--interval", "0.2"])
        return self

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
        return self.request(method, path, body, timeout=180)

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
    version = engine.client().version()
    load = os.getloadavg()
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(memory / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "docker_engine": version.get("Version"),
        "docker_api": version.get("ApiVersion"),
        "node_profile": engine.profile().name,
        "django": django.__version__,
        "channels": channels.__version__,
        "daphne": daphne.__version__,
        "websockets": websockets.__version__,
        "loadavg_at_start": [round(x, 2) for x in load],
    }
