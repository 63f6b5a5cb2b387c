"""The one Docker boundary: every call to the engine goes through this package.

Functions here are blocking (docker-py). Async callers use :func:`run`, which runs them
on a dedicated, sizeable thread pool so that a class starting at once is not queued
behind one thread. Teardown is idempotent: "not found" means done.

Every object created carries the labels ``pwd.instance``, ``pwd.role`` and, where it
belongs to one, ``pwd.session`` and ``pwd.node``; the reaper reconciles them with the
database.

The package: this module (the client, the thread pools, the one error family, labels
and names); :mod:`.profile` (how nodes get their powers, the probes, the escape check);
:mod:`.networks` (session networks and the shared gateway bridge); :mod:`.nodes`
(create, remove, connect, rename, exec, status, limits); :mod:`.inventory` (list and
remove by labels); :mod:`.tty` (the asynchronous attach the terminals use). Callers
import the package and use the names it re-exports at the bottom.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
import requests
from django.conf import settings
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from sessions_app import disks

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

T = TypeVar("T")


class EngineError(Exception):
    """The engine could not do what was asked; the message is fit for a user."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        for listener in error_listeners:
            listener(self)


# Called with each EngineError as it is made, on whichever thread (metrics counts them).
error_listeners: list[Callable[[EngineError], None]] = []


class EngineUnavailable(EngineError):
    """The engine does not answer at all."""


class NodeStartError(EngineError):
    """A node did not come up; whatever was created for it has been removed."""


class NodeGone(EngineError):
    """The engine does not know the node's container: it was removed (from outside, or
    by its session's end). The one name for that, from an exec to a terminal."""

    def __init__(self, message: str = "the node is gone") -> None:
        super().__init__(message)


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


def instance_filter(**extra: str) -> dict[str, list[str]]:
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


def random_name(role: str) -> str:
    return container_name(role, secrets.token_hex(4))


def under_free_name(name: str, attempt: Callable[[str], T]) -> T:
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


def create_container(image: str, name: str, **options: Any) -> str:
    """Create a container called ``name`` (or a suffixed name); returns its id."""
    api = client().api
    return under_free_name(name, lambda n: api.create_container(image, name=n, **options)["Id"])


# --- what every part needs ---------------------------------------------------------------


def remove_container(container_id: str) -> None:
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


def exec_simple(container_id: str, argv: list[str]) -> tuple[int | None, str]:
    api = client().api
    exec_id = api.exec_create(container_id, [*IN_NODE_ROOT, *argv], stdout=True, stderr=True)["Id"]
    output = api.exec_start(exec_id)
    exit_code = api.exec_inspect(exec_id).get("ExitCode")
    return exit_code, output.decode("utf-8", "replace")


# --- the parts, re-exported: callers use ``engine.<name>`` -------------------------------
# (imported last: each part imports the names above from this module)

from sessions_app.engine.host import LOCAL_HOST, HostMemory, host_memory
from sessions_app.engine.inventory import (
    EngineObjects,
    describe,
    list_objects,
    remove_session_objects,
    remove_volume,
)
from sessions_app.engine.networks import (
    GATEWAY_BRIDGE,
    GatewayEndpoint,
    container_pid,
    create_session_network,
    gateway_endpoints,
    guard_gateway,
    network_name,
    remove_network,
)
from sessions_app.engine.nodes import (
    ExecResult,
    NodeHandle,
    connect_node,
    container_status,
    create_node,
    exec_in_node,
    hand_over_cgroups,
    memory_usage,
    node_limits,
    remove_node,
    remove_unused_disks,
    rename_container,
    rename_node_host,
    wait_for_inner_docker,
)
from sessions_app.engine.profile import (
    HARDENING_CAP_DROP,
    ISOLATING_PROFILES,
    Profile,
    detect_profile,
    docker_run_args,
    engine_remaps_users,
    escape_check,
    profile,
    use_profile,
)
