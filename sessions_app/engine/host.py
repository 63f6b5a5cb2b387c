"""The engine's host: its name in capacity and metrics, and the memory it has for nodes."""

from __future__ import annotations

from dataclasses import dataclass

import requests
from docker.errors import DockerException

from sessions_app.engine import EngineUnavailable, client

# One engine today; issue 15's several hosts will name theirs.
LOCAL_HOST = "local"
_MEMINFO = "/proc/meminfo"


@dataclass(frozen=True)
class HostMemory:
    """``total``: the engine's MemTotal. ``available``: bytes new nodes may take now
    (the kernel's MemAvailable), or None when the engine runs on another machine and
    only its total is known."""

    total: int
    available: int | None


def _mem_available() -> int | None:
    try:
        with open(_MEMINFO, encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def host_memory() -> HostMemory:
    """The engine host's memory. Raises EngineUnavailable when the engine does not answer.

    MemAvailable is read from this machine's /proc only when the engine listens on a
    local socket (the same kernel); a remote engine reports its total alone.
    """
    api = client().api
    try:
        total = int(api.info()["MemTotal"])
    except (DockerException, requests.RequestException, KeyError, ValueError) as exc:
        raise EngineUnavailable(f"the Docker engine does not answer: {exc}") from exc
    local = str(api.base_url).startswith("http+docker://local")
    available = _mem_available() if local else None
    return HostMemory(total, None if available is None else min(available, total))
