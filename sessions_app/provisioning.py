"""The one Docker boundary: every call to the engine goes through this module.

Functions here are blocking (docker-py). Async callers use :func:`run`, which runs them
on a dedicated, sizeable thread pool so that a class starting at once is not queued
behind one thread. Teardown is idempotent: "not found" means done.

Every object created carries the labels ``pwd.instance``, ``pwd.role`` and, where it
belongs to one, ``pwd.session`` and ``pwd.node``; the reaper reconciles them with the
database.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import docker
import requests
from django.conf import settings
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import Mount

from sessions_app import cgroups, disks

log = logging.getLogger(__name__)

LABEL_INSTANCE = "pwd.instance"
LABEL_SESSION = "pwd.session"
LABEL_NODE = "pwd.node"
LABEL_ROLE = "pwd.role"
# The id of the node's own disk (sessions_app.disks), on nodes that have one.
LABEL_DISK = "pwd.disk"
# Where a node finds its disk; the entrypoint makes it the node's whole writable layer.
NODE_DISK_PATH = "/pwd-disk"
# Every command the app runs in a node goes into the root its shell has (the node's own
# disk; see the entrypoint): an exec may land in the root the container started with.
IN_NODE_ROOT = ("chroot", "/proc/1/root")
ROLE_NODE = "node"
ROLE_POOL = "pool"
ROLE_PROBE = "probe"
ROLE_NETWORK = "network"

# Every capability Linux knows; the engine expands "ALL" to those it supports.
KNOWN_CAPS = [
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
]

# Waits inside the node for its inner engine: one exec instead of many round trips.
_WAIT_FOR_INNER_DOCKER = (
    "i=0; while [ $i -lt {tries} ]; do "
    "curl -sf --max-time 1 --unix-socket /var/run/docker.sock http://docker/_ping "
    ">/dev/null 2>&1 && exit 0; i=$((i+1)); sleep 0.05; done; exit 1"
)

T = TypeVar("T")

# Seconds to keep trying to remove a network whose endpoints are still going away.
NETWORK_REMOVE_PATIENCE = 10.0


class EngineError(Exception):
    """The engine could not do what was asked; the message is fit for a user."""


class EngineUnavailable(EngineError):
    """The engine does not answer at all."""


class NodeStartError(EngineError):
    """A node did not come up; whatever was created for it has been removed."""


# Docker's defaults for an unprivileged container (moby's oci/defaults.go).
DEFAULT_MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
DEFAULT_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
# Devices a node may open beyond the engine's defaults (null, zero, full, random, tty,
# console, ptmx, pts, tun): FUSE, for fuse-overlayfs. No block device, no /dev/kmsg.
NODE_DEVICE_RULES = ("c 10:229 rwm",)
# Taken from every node whatever the setting says: nothing in a node needs the host's
# kernel log, clock or raw I/O ports.
HARDENING_CAP_DROP = ("SYSLOG", "SYS_TIME", "SYS_RAWIO")
# The profiles under which root in a node is not root on the host.
ISOLATING_PROFILES = ("userns", "sysbox")


@dataclass(frozen=True)
class Profile:
    """How node containers get the powers an inner dockerd needs.

    ``userns``: the engine runs with ``userns-remap``, so a node's root is an unprivileged
    user on the host; every capability is granted, but only inside the node's own user
    namespace, and the node's cgroup directories are handed to it after start
    (:mod:`sessions_app.cgroups`). ``sysbox``: the Sysbox runtime does the same.
    ``caps`` and ``privileged`` give real root: they do not isolate (docs/security.md).
    """

    name: str  # "userns", "sysbox", "caps" or "privileged"
    cap_drop: tuple[str, ...] = ()
    # The host uid and gid of root in a node (not 0 under userns: its disk is made theirs).
    root_ids: tuple[int, int] = (0, 0)

    @property
    def isolates(self) -> bool:
        return self.name in ISOLATING_PROFILES

    def host_config(self, **extra: Any) -> dict[str, Any]:
        """The engine's HostConfig for a node with this profile, plus ``extra`` options."""
        api = client().api
        cap_drop = list(self.cap_drop) or None
        if self.name == "sysbox":
            # Sysbox gives an unprivileged container what dockerd needs, user-namespaced.
            return api.create_host_config(
                runtime=settings.PWD_SYSBOX_RUNTIME, cap_drop=cap_drop, **extra
            )
        # Real root even where the engine remaps users (only there is the option needed).
        real_root = {} if self.name == "userns" else {"userns_mode": "host"}
        if self.name == "privileged":
            return api.create_host_config(privileged=True, cap_drop=cap_drop, **real_root, **extra)
        config = api.create_host_config(
            cap_add=["ALL"],
            cap_drop=cap_drop,
            security_opt=["seccomp=unconfined", "apparmor=unconfined"],
            device_cgroup_rules=list(NODE_DEVICE_RULES),
            **real_root,
            **extra,
        )
        if self.name == "userns":
            # The inner engine mounts a fresh /proc and /sys for each container, which a
            # user namespace allows only where they are fully visible: nothing masked.
            # The kernel keeps the host's sysctls, sysrq and kcore from the node's root.
            config["MaskedPaths"] = []
            config["ReadonlyPaths"] = []
        else:
            # Real root needs /proc/sys for the inner engine's network sysctls; the
            # entrypoint makes all of it but net.* read-only again.
            config["MaskedPaths"] = list(DEFAULT_MASKED_PATHS)
            config["ReadonlyPaths"] = [p for p in DEFAULT_READONLY_PATHS if p != "/proc/sys"]
        return config


@dataclass
class NodeHandle:
    """What the engine says about a node container once it is up."""

    container_id: str
    ip: str
    networks: dict[str, str] = field(default_factory=dict)


@dataclass
class ExecResult:
    exit_code: int | None
    output: str
    truncated: bool
    timed_out: bool


@dataclass
class EngineObjects:
    """Labelled objects of this pwd instance, as the engine lists them."""

    containers: list[dict[str, Any]]
    networks: list[dict[str, Any]]
    volumes: list[dict[str, Any]]


# --- the client and the thread pool ----------------------------------------------------

_client_lock = threading.Lock()
_client: docker.DockerClient | None = None
_exec_client: docker.DockerClient | None = None
_pools: dict[str, ThreadPoolExecutor] = {}

# The longest command the exec API runs; the exec client waits a little longer for it.
EXEC_MAX_TIMEOUT = 600


def client() -> docker.DockerClient:
    """The shared docker-py client (thread-safe; one connection pool per process)."""
    global _client
    if _client is None:
        with _client_lock:
            if _client is None:
                try:
                    _client = docker.from_env(
                        max_pool_size=settings.PWD_ENGINE_THREADS + 8, timeout=120
                    )
                except DockerException as exc:
                    raise EngineUnavailable(f"the Docker engine does not answer: {exc}") from exc
    return _client


def exec_client() -> docker.DockerClient:
    """A client for long execs: its socket timeout outlasts the longest allowed command.

    The shared client gives up on a read after 120 s of silence, but a command may run
    quietly for up to EXEC_MAX_TIMEOUT; the in-node timeout is what bounds it. Its
    connection pool holds one connection per exec thread, so none is opened and thrown
    away per call.
    """
    global _exec_client
    if _exec_client is None:
        with _client_lock:
            if _exec_client is None:
                try:
                    _exec_client = docker.from_env(
                        max_pool_size=settings.PWD_EXEC_THREADS + 8,
                        timeout=EXEC_MAX_TIMEOUT + 60,
                    )
                except DockerException as exc:
                    raise EngineUnavailable(f"the Docker engine does not answer: {exc}") from exc
    return _exec_client


def _pool(name: str, threads: int) -> ThreadPoolExecutor:
    pool = _pools.get(name)
    if pool is None:
        with _client_lock:
            pool = _pools.get(name)
            if pool is None:
                pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"pwd-{name}")
                _pools[name] = pool
    return pool


def executor() -> ThreadPoolExecutor:
    """The engine pool (PWD_ENGINE_THREADS): node starts, removals, networks, inspects."""
    return _pool("engine", settings.PWD_ENGINE_THREADS)


def exec_executor() -> ThreadPoolExecutor:
    """The exec API's own pool (PWD_EXEC_THREADS): a command may hold its thread for up
    to EXEC_MAX_TIMEOUT, and those must never keep an add or a session's end waiting."""
    return _pool("exec", settings.PWD_EXEC_THREADS)


async def run(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking engine call on the engine thread pool.

    Raises EngineError (EngineUnavailable when the engine does not answer) for any
    failure docker-py did not already turn into one, so callers handle a single family.
    """
    return await _run_on(executor(), functools.partial(func, *args, **kwargs))


async def run_exec(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """:func:`run` on the exec thread pool, for commands run in nodes."""
    return await _run_on(exec_executor(), functools.partial(func, *args, **kwargs))


async def _run_on(pool: ThreadPoolExecutor, call: Callable[[], T]) -> T:
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(pool, call)
    except EngineError:
        raise
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise EngineUnavailable(f"the Docker engine does not answer: {exc}") from exc
    except DockerException as exc:
        raise EngineError(f"the Docker engine refused: {exc}") from exc


def labels(role: str, session_id: str | None = None, node: str | None = None) -> dict[str, str]:
    """The labels every object this instance creates carries."""
    result = {LABEL_INSTANCE: settings.PWD_INSTANCE, LABEL_ROLE: role}
    if session_id:
        result[LABEL_SESSION] = session_id
    if node:
        result[LABEL_NODE] = node
    return result


def _instance_filter(**extra: str) -> dict[str, list[str]]:
    wanted = [f"{LABEL_INSTANCE}={settings.PWD_INSTANCE}"]
    wanted += [f"{key}={value}" for key, value in extra.items()]
    return {"label": wanted}


def ping() -> bool:
    """True when the engine answers."""
    try:
        return bool(client().ping())
    except (DockerException, EngineUnavailable, OSError):
        return False


def image_exists(image: str) -> bool:
    try:
        client().images.get(image)
    except ImageNotFound:
        return False
    except DockerException as exc:
        raise EngineUnavailable(str(exc)) from exc
    return True


# --- the node security profile ---------------------------------------------------------

_profile: Profile | None = None
_profile_lock = threading.Lock()


def profile() -> Profile:
    """The node profile for this engine: the setting, or detected once with probes."""
    global _profile
    if _profile is None:
        with _profile_lock:
            if _profile is None:
                _profile = _detect_profile()
    return _profile


def _probe_starts(image: str, host_config: dict[str, Any]) -> tuple[bool, str]:
    """Whether a probe container with ``host_config`` starts and exits cleanly."""
    api = client().api
    container_id = ""
    try:
        container_id = api.create_container(
            image,
            entrypoint=["true"],
            labels=labels(ROLE_PROBE),
            host_config=host_config,
            name=_random_name(ROLE_PROBE),
        )["Id"]
        api.start(container_id)
        result = api.wait(container_id, timeout=30)
        return result.get("StatusCode") == 0, ""
    except APIError as exc:
        return False, str(exc.explanation or exc)
    finally:
        if container_id:
            _remove_container(container_id)


def _probe_root_ids(image: str, profile: Profile) -> tuple[int, int]:
    """The host uid and gid that root in a node maps to (read from a probe's uid_map)."""
    api = client().api
    container_id = api.create_container(
        image,
        entrypoint=["sleep", "30"],
        labels=labels(ROLE_PROBE),
        host_config=profile.host_config(network_mode="none"),
        name=_random_name(ROLE_PROBE),
    )["Id"]
    try:
        api.start(container_id)
        pid = api.inspect_container(container_id)["State"].get("Pid") or 0
        return cgroups.outer_root(pid)
    except cgroups.DelegationError as exc:
        raise EngineError(f"cannot see the node's user namespace from here: {exc}") from exc
    finally:
        _remove_container(container_id)


def _engine_known_caps(image: str) -> list[str]:
    """The capability names this engine accepts (older engines know fewer)."""
    known = list(KNOWN_CAPS)
    for _ in range(len(KNOWN_CAPS)):
        try:
            container = client().api.create_container(
                image,
                entrypoint=["true"],
                labels=labels(ROLE_PROBE),
                host_config=client().api.create_host_config(cap_drop=known, network_mode="none"),
                name=_random_name(ROLE_PROBE),
            )
        except APIError as exc:
            match = re.search(r'unknown capability: "?(?:CAP_)?([A-Z_]+)', str(exc.explanation))
            if exc.status_code == 400 and match and match.group(1) in known:
                known.remove(match.group(1))
                continue
            raise EngineError(f"the engine refused a probe container: {exc.explanation}") from exc
        _remove_container(container["Id"])
        return known
    raise EngineError("could not work out which capabilities the engine knows")


def engine_remaps_users() -> bool:
    """Whether the engine runs containers in a user namespace (``userns-remap``)."""
    try:
        options = client().info().get("SecurityOptions") or []
    except DockerException as exc:
        raise EngineUnavailable(f"the Docker engine does not answer: {exc}") from exc
    return any("name=userns" in option for option in options)


def _detect_profile() -> Profile:
    wanted_drop = (cap.upper().removeprefix("CAP_") for cap in settings.PWD_NODE_CAP_DROP)
    drop = tuple(dict.fromkeys([*wanted_drop, *HARDENING_CAP_DROP]))
    image = settings.PWD_NODE_IMAGE
    wanted = settings.PWD_NODE_PROFILE
    if wanted in ("privileged", "sysbox"):
        log.info("node profile: %s (PWD_NODE_PROFILE)", wanted)
        return Profile(wanted, drop)
    remapped = engine_remaps_users()
    if wanted == "userns" and not remapped:
        raise EngineError(
            "PWD_NODE_PROFILE=userns, but the engine does not remap users: start dockerd "
            "with --userns-remap=default (docs/security.md)"
        )
    if wanted in ("auto", "userns") and remapped:
        # Under userns-remap --privileged is refused and every capability is the node's
        # own; only those the engine cannot grant at all are left out.
        wanted = "userns"
    kind = "userns" if wanted == "userns" else "caps"
    if wanted == "auto":
        ok, why = _probe_starts(image, Profile("privileged", drop).host_config(network_mode="none"))
        if ok:
            log.info("node profile: privileged (probe container started)")
            return Profile("privileged", drop)
        log.info("node profile: --privileged is refused here (%s); using capabilities", why)
    known = _engine_known_caps(image)
    ok, why = _probe_starts(
        image, client().api.create_host_config(cap_drop=["ALL"], network_mode="none")
    )
    if not ok:
        raise EngineError(f"a probe container of {image} does not start: {why}")
    # Find the capabilities the engine cannot grant by group testing: a probe that adds a
    # set of capabilities starts only when the engine can grant all of them.
    candidates = [cap for cap in known if cap not in drop]

    def grantable(caps: list[str]) -> bool:
        profile = Profile(kind, tuple(cap for cap in known if cap not in caps))
        return _probe_starts(image, profile.host_config(network_mode="none"))[0]

    missing: list[str] = []

    def search(caps: list[str]) -> None:
        if not caps or grantable(caps):
            return
        if len(caps) == 1:
            missing.append(caps[0])
            return
        half = len(caps) // 2
        search(caps[:half])
        search(caps[half:])

    search(candidates)
    result = Profile(kind, tuple(sorted((set(drop) & set(known)) | set(missing))))
    if kind == "userns":
        result = Profile(kind, result.cap_drop, _probe_root_ids(image, result))
    log.info(
        "node profile: %s (every capability the engine grants; dropped: %s)",
        "user-namespaced" if kind == "userns" else "capabilities, real root",
        ", ".join(result.cap_drop) or "none",
    )
    return result


# Run inside a probe node through exec, as an attacker would: each line names a route to
# the host that worked. Every write puts back the value it read, and a cgroup hierarchy
# that could be mounted is unmounted at once (one left behind breaks the engine's stats).
_ESCAPE_PROBE = r"""
open() { echo "open $1"; }
# busybox's mount is never set-uid (the image's may belong to a remapped root).
mount() { if command -v busybox >/dev/null; then busybox mount "$@"; else command mount "$@"; fi; }
d=$(mktemp -d)
if mount -t cgroup -o none,name=pwdprobe cgroup "$d" 2>/dev/null; then
    open cgroup-release-agent; busybox umount "$d" 2>/dev/null || umount "$d"
fi
rmdir "$d"
v=$(cat /proc/sys/kernel/core_pattern)
printf '%s\n' "$v" 2>/dev/null > /proc/sys/kernel/core_pattern && open core-pattern
for f in pids/pids.max pids.max memory/memory.limit_in_bytes memory.max cpu/cpu.cfs_quota_us; do
    f=/sys/fs/cgroup/$f
    [ -f "$f" ] || continue
    mount -o remount,bind,rw "${f%/*}" 2>/dev/null
    v=$(cat "$f") && printf '%s\n' "$v" 2>/dev/null > "$f" && open "cgroup-limits:$f"
done
dmesg >/dev/null 2>&1 && open kernel-log
k=$(mktemp -u)
mknod "$k" c 1 11 2>/dev/null && head -c 1 "$k" >/dev/null 2>&1 && open kmsg-device
rm -f "$k"
exit 0
"""


def escape_check(image: str | None = None) -> list[str]:
    """Try the known routes from a node to the host with this engine's node profile.

    Returns the routes that worked (empty: the profile held). The probe node runs on no
    network and is removed at the end.
    """
    image = image or settings.PWD_NODE_IMAGE
    api = client().api
    config = profile().host_config(network_mode="none", init=True, **node_limits())
    container_id = ""
    try:
        container_id = api.create_container(
            image,
            entrypoint=["sleep", "120"],
            labels=labels(ROLE_PROBE),
            host_config=config,
            name=_random_name(ROLE_PROBE),
        )["Id"]
        api.start(container_id)
        if profile().name == "userns":
            hand_over_cgroups(container_id)
        code, output = _exec_simple(container_id, ["sh", "-c", _ESCAPE_PROBE])
    except APIError as exc:
        raise EngineError(f"the escape check could not run: {exc.explanation or exc}") from exc
    finally:
        if container_id:
            _remove_container(container_id)
    if code != 0:
        raise EngineError(f"the escape check failed to run: {output.strip()[-300:]}")
    return [line.removeprefix("open ") for line in output.splitlines() if line.startswith("open ")]


# --- networks ---------------------------------------------------------------------------


def network_name(session_id: str) -> str:
    """The session network's name: a swarm wants a DNS-safe one, and a session id may
    hold ``_`` and ``-`` anywhere (a name ending in one is refused), so it is hex of a
    hash; 96 bits make clashes moot. The ``pwd.session`` label holds the full id."""
    digest = hashlib.sha256(session_id.encode()).hexdigest()[:24]
    return f"{settings.PWD_INSTANCE}-{digest}"


def create_session_network(session_id: str) -> tuple[str, str]:
    """Create the session's attachable overlay network. Returns ``(name, id)``."""
    name = network_name(session_id)
    try:
        network = client().networks.create(
            name,
            driver="overlay",
            attachable=True,
            check_duplicate=True,
            labels=labels(ROLE_NETWORK, session_id),
        )
    except APIError as exc:
        if exc.status_code == 409:
            existing = client().networks.get(name)
            return name, existing.id
        if "swarm" in str(exc).lower():
            raise EngineError(
                "the Docker engine is not in swarm mode, so it cannot make overlay networks "
                "(run `docker swarm init --advertise-addr 127.0.0.1`)"
            ) from exc
        raise EngineError(f"could not create the session network: {exc.explanation}") from exc
    except DockerException as exc:
        raise EngineUnavailable(str(exc)) from exc
    return name, network.id


def remove_network(name_or_id: str) -> None:
    """Remove a network; a missing one counts as removed."""
    # Endpoints of containers just removed can linger; swarm releases an overlay
    # network's tasks slowly when the machine is busy (seen: several seconds).
    deadline = time.monotonic() + NETWORK_REMOVE_PATIENCE
    delay = 0.1
    while True:
        try:
            client().networks.get(name_or_id).remove()
            return
        except NotFound:
            return
        except APIError as exc:
            if exc.status_code in (403, 409, 500) and time.monotonic() + delay < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            raise EngineError(f"could not remove network: {exc.explanation}") from exc


# --- nodes ------------------------------------------------------------------------------


def _remove_container(container_id: str) -> None:
    """Remove a container, its volumes and its disk; a missing one counts as removed."""
    api = client().api
    try:
        disk_id = (api.inspect_container(container_id)["Config"].get("Labels") or {}).get(
            LABEL_DISK, ""
        )
        api.remove_container(container_id, force=True, v=True)
    except NotFound:
        return
    except APIError as exc:
        if exc.status_code == 409 and "already in progress" in str(exc):
            return
        raise EngineError(f"could not remove container: {exc.explanation}") from exc
    if disk_id:
        disks.remove(disk_id)


def remove_unused_disks() -> list[str]:
    """Remove node disks that no container on the engine (of any instance) claims."""
    try:
        claimed = client().api.containers(all=True, filters={"label": [LABEL_DISK]})
    except DockerException as exc:
        raise EngineUnavailable(str(exc)) from exc
    return disks.remove_unused({c["Labels"].get(LABEL_DISK, "") for c in claimed})


def remove_node(container_id: str) -> None:
    """Remove a node container and its volumes; a missing one counts as removed."""
    if container_id:
        _remove_container(container_id)


def _container_ip(attrs: dict[str, Any], network: str | None) -> tuple[str, dict[str, str]]:
    networks = {
        name: data.get("IPAddress", "")
        for name, data in (attrs.get("NetworkSettings", {}).get("Networks") or {}).items()
    }
    if network and networks.get(network):
        return networks[network], networks
    return next((ip for ip in networks.values() if ip), ""), networks


def wait_for_inner_docker(container_id: str, timeout: float) -> None:
    """Block until the node's inner engine answers, or raise NodeStartError."""
    tries = max(1, int(timeout / 0.05))
    exit_code, output = _exec_simple(
        container_id, ["sh", "-c", _WAIT_FOR_INNER_DOCKER.format(tries=tries)]
    )
    if exit_code != 0:
        raise NodeStartError(
            f"the node's Docker engine did not answer within {timeout:.0f} s"
            + (f": {output.strip()[-300:]}" if output.strip() else "")
        )


def _exec_simple(container_id: str, argv: list[str]) -> tuple[int | None, str]:
    api = client().api
    exec_id = api.exec_create(container_id, [*IN_NODE_ROOT, *argv], stdout=True, stderr=True)["Id"]
    output = api.exec_start(exec_id)
    exit_code = api.exec_inspect(exec_id).get("ExitCode")
    return exit_code, output.decode("utf-8", "replace")


def create_node(
    session_id: str | None,
    node_name: str,
    network: str | None,
    image: str | None = None,
    *,
    role: str = ROLE_NODE,
    wait: bool = True,
    name: str | None = None,
) -> NodeHandle:
    """Start a DinD node and return once its inner engine answers.

    With ``network`` None the node starts on no network (a warm pool node). ``name`` is
    the container's engine name (see :func:`container_name`; suffixed when taken), by
    default ``pwd-<instance>-<role>-<random>``. On any failure everything created for
    the node is removed and NodeStartError is raised.
    """
    image = image or settings.PWD_NODE_IMAGE
    node_labels = labels(role, session_id, node_name if session_id else None)
    disk_id = secrets.token_hex(6) if settings.PWD_NODE_DISK else ""
    if disk_id:
        node_labels[LABEL_DISK] = disk_id
    # The inner engine's data on an anonymous, labelled volume that goes with the node
    # (on the node's own disk, when it has one: the entrypoint moves it there).
    mounts = [Mount("/var/lib/docker", None, type="volume", labels=node_labels)]
    api = client().api
    networking_config = None
    if network:
        networking_config = api.create_networking_config(
            {network: api.create_endpoint_config(aliases=[node_name])}
        )
    container_id = ""
    try:
        if disk_id:
            source = disks.create(disk_id, settings.PWD_NODE_DISK, *profile().root_ids)
            mounts.append(Mount(NODE_DISK_PATH, str(source), type="bind"))
        host_config = profile().host_config(
            init=True, network_mode=network or "none", mounts=mounts, **node_limits()
        )
        container_id = _create_container(
            image,
            name or _random_name(role),
            detach=True,
            tty=True,
            stdin_open=True,
            hostname=node_name,
            labels=node_labels,
            environment=_node_environment(node_name, role),
            host_config=host_config,
            networking_config=networking_config,
        )
        api.start(container_id)
        if profile().name == "userns":
            hand_over_cgroups(container_id)
        if wait:
            wait_for_inner_docker(container_id, settings.PWD_NODE_START_TIMEOUT)
        if network:
            guard_gateway()
        ip, networks = _container_ip(api.inspect_container(container_id), network)
        return NodeHandle(container_id, ip, networks)
    except ImageNotFound as exc:
        _cleanup_failed(container_id)
        raise NodeStartError(f"the image {image} is not on this engine") from exc
    except NodeStartError:
        _cleanup_failed(container_id)
        raise
    except APIError as exc:
        _cleanup_failed(container_id)
        raise NodeStartError(f"the node could not start: {exc.explanation or exc}") from exc
    except DockerException as exc:
        _cleanup_failed(container_id)
        raise EngineUnavailable(f"the Docker engine does not answer: {exc}") from exc
    except disks.DiskError as exc:
        _cleanup_failed(container_id)
        raise NodeStartError(str(exc)) from exc
    finally:
        if disk_id and not container_id:
            disks.remove(disk_id)


def hand_over_cgroups(container_id: str) -> None:
    """Let a user-namespaced node's inner engine make cgroups under its own (see
    :mod:`sessions_app.cgroups`). Raises NodeStartError when that cannot be done here."""
    pid = client().api.inspect_container(container_id)["State"].get("Pid") or 0
    if not pid:
        raise NodeStartError("the node stopped as it started")
    try:
        cgroups.delegate(pid)
    except cgroups.DelegationError as exc:
        raise NodeStartError(f"could not give the node its cgroups: {exc}") from exc


def node_limits() -> dict[str, Any]:
    """HostConfig options that cap what one node may use (see docs/configuration.md)."""
    limits: dict[str, Any] = {
        "mem_limit": settings.PWD_NODE_MEMORY,
        # Docker's memswap is memory plus swap.
        "memswap_limit": settings.PWD_NODE_MEMORY + settings.PWD_NODE_SWAP,
        "oom_kill_disable": False,
        "nano_cpus": int(settings.PWD_NODE_CPUS * 1e9),
        "pids_limit": settings.PWD_NODE_PIDS,
        "log_config": {
            "type": "json-file",
            "config": {"max-size": str(settings.PWD_NODE_LOG_SIZE), "max-file": "1"},
        },
    }
    return limits


def _cleanup_failed(container_id: str) -> None:
    if not container_id:
        return
    try:
        _remove_container(container_id)
    except (EngineError, DockerException):
        log.exception("could not remove a node that failed to start; the reaper will")


def container_status(container_id: str) -> str:
    """``running``, ``exited`` (or another engine state), or ``missing``."""
    try:
        return client().api.inspect_container(container_id)["State"]["Status"]
    except NotFound:
        return "missing"


def exec_in_node(
    container_id: str, command: list[str], timeout: float, max_output: int
) -> ExecResult:
    """Run ``command`` in a node; output (stdout and stderr merged) capped at max_output.

    The command runs under ``timeout`` inside the node and its output goes through
    ``head -c``, so a runaway command is ended in the node, not merely abandoned.
    """
    script = (
        'set -o pipefail; timeout -k 2 "$0" "$@" 2>&1 | head -c "$PWD_EXEC_CAP"; '
        "exit ${PIPESTATUS[0]}"
    )
    argv = [*IN_NODE_ROOT, "bash", "-c", script, str(max(1, math.ceil(timeout))), *command]
    api = exec_client().api
    started = time.monotonic()
    try:
        exec_id = api.exec_create(
            container_id,
            argv,
            stdout=True,
            stderr=True,
            environment={"PWD_EXEC_CAP": str(max_output + 1)},
        )["Id"]
        output = api.exec_start(exec_id)
        exit_code = api.exec_inspect(exec_id).get("ExitCode")
    except NotFound as exc:
        raise EngineError("the node is gone") from exc
    except APIError as exc:
        raise EngineError(f"could not run the command: {exc.explanation or exc}") from exc
    truncated = len(output) > max_output
    output = output[:max_output]
    # 137 is also a command the kernel's OOM killer ended inside the node: only one that
    # ran for its whole time limit timed out.
    timed_out = (
        exit_code in (124, 137) and not truncated and time.monotonic() - started >= timeout - 0.5
    )
    if timed_out:
        exit_code = None
    return ExecResult(exit_code, output.decode("utf-8", "replace"), truncated, timed_out)


def _node_environment(node_name: str, role: str) -> dict[str, str]:
    environment = {"PWD_NODE_NAME": node_name}
    if role == ROLE_POOL:
        # The entrypoint holds back the login shell until rename_node_host releases it.
        environment["PWD_NODE_POOLED"] = "1"
    return environment


# Renames the host, points the /etc/hosts line the engine wrote for the old name (on
# connect) at the new one, and starts the shell a pool node holds back (see the node
# entrypoint). /etc/hosts is a bind mount: rewritten in place, never replaced.
_RENAME_HOST = (
    'old=$(hostname); hostname "$1" || exit 1; '
    'if [ "$old" != "$1" ] && grep -q "[[:space:]]$old\\$" /etc/hosts; then '
    'hosts=$(sed "s/[[:space:]]$old\\$/\\t$1/" /etc/hosts) && '
    "printf '%s\\n' \"$hosts\" > /etc/hosts; fi; "
    "if [ -p /run/pwd-claim ]; then timeout 5 sh -c 'echo go > /run/pwd-claim' || exit 1; fi"
)


def rename_node_host(container_id: str, hostname: str) -> None:
    """Rename a node's host inside it (shell prompt and inner dockerd follow).

    A pool node's login shell starts only now, so its first prompt shows ``hostname``.
    """
    try:
        code, output = _exec_simple(container_id, ["sh", "-c", _RENAME_HOST, "sh", hostname])
    except NotFound as exc:
        raise EngineError("the node is gone") from exc
    except APIError as exc:
        raise EngineError(f"could not rename the node: {exc.explanation or exc}") from exc
    if code != 0:
        raise EngineError(f"could not rename the node: {output.strip()}")


def memory_usage(container_id: str) -> int:
    """Bytes of memory the container's cgroup uses, counted as ``docker stats`` does
    (page cache that can be dropped at once is left out). Raises EngineError when gone."""
    try:
        stats = client().api.stats(container_id, stream=False, one_shot=True)
    except NotFound as exc:
        raise EngineError("the node is gone") from exc
    except APIError as exc:
        raise EngineError(f"could not read the node's stats: {exc.explanation or exc}") from exc
    memory = stats.get("memory_stats") or {}
    detail = memory.get("stats") or {}
    # cgroup v2 reports inactive_file, v1 total_inactive_file.
    cache = detail.get("inactive_file", detail.get("total_inactive_file", 0))
    return max(0, int(memory.get("usage", 0)) - int(cache))


def connect_node(container_id: str, network: str, alias: str) -> str:
    """Move a node from no network onto ``network`` with ``alias``. Returns its IP there."""
    api = client().api
    try:
        try:
            api.disconnect_container_from_network(container_id, "none")
        except APIError as exc:
            if exc.status_code not in (404, 409, 500):
                raise
        api.connect_container_to_network(container_id, network, aliases=[alias])
        attrs = api.inspect_container(container_id)
    except NotFound as exc:
        raise EngineError("the node is gone") from exc
    except APIError as exc:
        raise EngineError(f"could not attach the node: {exc.explanation or exc}") from exc
    guard_gateway()
    return _container_ip(attrs, network)[0]


# --- container names --------------------------------------------------------------------

# Characters an engine name may not hold (it must match [a-zA-Z0-9][a-zA-Z0-9_.-]*).
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")
# Names tried for one container: the wanted one first, the others with a random suffix.
NAME_TRIES = 4


def container_name(*parts: str) -> str:
    """A readable engine name, ``pwd-<PWD_INSTANCE>-<parts...>``, for ``docker ps``.

    Only operators read names: reconciliation goes by labels and ids, never by a name.
    Characters the engine refuses become ``-``.
    """
    return _NAME_UNSAFE.sub("-", "-".join(("pwd", settings.PWD_INSTANCE, *parts)))


def _random_name(role: str) -> str:
    return container_name(role, secrets.token_hex(4))


def _under_free_name(name: str, attempt: Callable[[str], T]) -> T:
    """``attempt(name)``; while the engine answers that another container holds the name,
    again with a random suffix. A container of the same name may still be going (a node
    removed and added again at once), and two sessions may share a short id: a suffixed
    name beats a failed start."""
    names = [name] + [f"{name}-{secrets.token_hex(2)}" for _ in range(NAME_TRIES - 1)]
    for candidate in names[:-1]:
        try:
            return attempt(candidate)
        except APIError as exc:
            if not (exc.status_code == 409 and "already in use" in str(exc.explanation)):
                raise
            log.info("container name %s is taken; trying another", candidate)
    return attempt(names[-1])


def _create_container(image: str, name: str, **options: Any) -> str:
    """Create a container called ``name`` (or a suffixed name); returns its id."""
    api = client().api
    return _under_free_name(name, lambda n: api.create_container(image, name=n, **options)["Id"])


def rename_container(container_id: str, name: str) -> str:
    """Give a container the engine name ``name`` (or a suffixed name, see
    :func:`_under_free_name`); returns the name given. Instant, and nothing inside the
    container notices. Rename before connecting to an overlay network: a renamed
    container's endpoint clashes with its old one in the swarm's table (seen on 20.10).
    Raises EngineError when the container is gone or the engine refuses."""

    def rename(candidate: str) -> str:
        client().api.rename(container_id, candidate)
        return candidate

    try:
        return _under_free_name(name, rename)
    except NotFound as exc:
        raise EngineError("the node is gone") from exc
    except APIError as exc:
        raise EngineError(f"could not rename the node: {exc.explanation or exc}") from exc


# --- reconciliation ---------------------------------------------------------------------


def list_objects() -> EngineObjects:
    """Every labelled container, network and volume of this instance."""
    api = client().api
    try:
        containers = api.containers(all=True, filters=_instance_filter())
        networks = api.networks(filters=_instance_filter())
        volumes = api.volumes(filters=_instance_filter()).get("Volumes") or []
    except DockerException as exc:
        raise EngineUnavailable(str(exc)) from exc
    return EngineObjects(containers, networks, volumes)


def remove_volume(name: str) -> None:
    try:
        client().api.remove_volume(name, force=True)
    except NotFound:
        pass
    except APIError as exc:
        if exc.status_code == 409:  # still in use; it goes with its container
            return
        raise EngineError(f"could not remove volume: {exc.explanation}") from exc


def remove_session_objects(session_id: str, wait: float = 10.0) -> None:
    """Remove every container, volume and network labelled with ``session_id``.

    Returns once the engine no longer lists any of them: a swarm removes an overlay
    network asynchronously, and callers promise "removed" when this returns. Raises
    EngineError when something is still there after ``wait`` seconds.

    Containers on the session network go too: a node taken from the warm pool keeps the
    labels it was created with (``pwd.role=pool``, no ``pwd.session``).
    """
    api = client().api
    wanted = _instance_filter(**{LABEL_SESSION: session_id})
    on_network = {**_instance_filter(), "network": [network_name(session_id)]}
    deadline = time.monotonic() + wait

    def containers() -> list[dict[str, Any]]:
        return api.containers(all=True, filters=wanted) + api.containers(
            all=True, filters=on_network
        )

    def wait_until_gone(listing: Callable[[], list[Any]], what: str) -> None:
        while listing():
            if time.monotonic() > deadline:
                raise EngineError(f"the session's {what} are still on the engine")
            time.sleep(0.05)

    try:
        for container in containers():
            _remove_container(container["Id"])
        # Another remover (a second reaper) may still be at it, and a network with an
        # endpoint left cannot go: wait for the containers first.
        wait_until_gone(containers, "containers")
        for volume in api.volumes(filters=wanted).get("Volumes") or []:
            remove_volume(volume["Name"])
        for network in api.networks(filters=wanted):
            remove_network(network["Id"])
        wait_until_gone(lambda: api.networks(filters=wanted), "networks")
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise EngineUnavailable(f"the Docker engine does not answer: {exc}") from exc
    except DockerException as exc:
        raise EngineError(f"could not remove the session's objects: {exc}") from exc


def describe(container_id: str) -> str:
    """Logs and state of a container, for a human reading a failure."""
    try:
        container = client().containers.get(container_id)
    except NotFound:
        return f"container {container_id[:12]} is gone"
    state = container.attrs.get("State", {})
    logs = container.logs(tail=50).decode("utf-8", "replace")
    return f"state: {state}\nlogs:\n{logs}"


# --- the nodes' ports on docker_gwbridge (bound to their addresses by antispoof) ---------

GATEWAY_BRIDGE = "docker_gwbridge"


@dataclass(frozen=True)
class GatewayEndpoint:
    """A container's endpoint on docker_gwbridge, the bridge that overlay networks leave
    the host by and that every session shares."""

    container_id: str
    endpoint_id: str
    ipv4: str
    mac: str


def gateway_endpoints() -> list[GatewayEndpoint]:
    """Every container's endpoint on docker_gwbridge, as the engine records it (docker's
    ingress sandbox included); empty when there is no such bridge yet."""
    try:
        attrs = client().api.inspect_network(GATEWAY_BRIDGE)
    except NotFound:
        return []
    except DockerException as exc:
        raise EngineUnavailable(f"the Docker engine does not answer: {exc}") from exc
    return [
        GatewayEndpoint(
            container_id,
            entry.get("EndpointID") or "",
            (entry.get("IPv4Address") or "").split("/")[0],
            (entry.get("MacAddress") or "").lower(),
        )
        for container_id, entry in (attrs.get("Containers") or {}).items()
    ]


def container_pid(container_id: str) -> int:
    """The host pid of a container's first process; 0 when it is not running or gone."""
    try:
        return int(client().api.inspect_container(container_id)["State"].get("Pid") or 0)
    except NotFound:
        return 0
    except DockerException as exc:
        raise EngineUnavailable(f"the Docker engine does not answer: {exc}") from exc


def guard_gateway() -> None:
    """Bind every container's port on docker_gwbridge to its own MAC and IPv4, so that a
    node cannot answer for another (:mod:`sessions_app.antispoof`). Never raises: where
    that cannot be done it is logged, and the nodes work unguarded."""
    from sessions_app import antispoof  # host plumbing, needed only once a node joins

    antispoof.guard(gateway_endpoints, container_pid)
