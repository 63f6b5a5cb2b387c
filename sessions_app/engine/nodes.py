"""Nodes: create, remove, connect, rename, run commands in, read status and limits."""

from __future__ import annotations

import logging
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import Mount

from sessions_app import cgroups, disks
from sessions_app.engine import (
    IN_NODE_ROOT,
    LABEL_DISK,
    NODE_DISK_PATH,
    ROLE_NODE,
    ROLE_POOL,
    EngineError,
    EngineUnavailable,
    NodeGone,
    NodeStartError,
    client,
    create_container,
    exec_client,
    exec_simple,
    labels,
    random_name,
    remove_container,
    under_free_name,
)
from sessions_app.engine.networks import guard_gateway
from sessions_app.engine.profile import profile

log = logging.getLogger(__name__)

# Waits inside the node for its inner engine: one exec instead of many round trips.
_WAIT_FOR_INNER_DOCKER = (
    "i=0; while [ $i -lt {tries} ]; do "
    "curl -sf --max-time 1 --unix-socket /var/run/docker.sock http://docker/_ping "
    ">/dev/null 2>&1 && exit 0; i=$((i+1)); sleep 0.05; done; exit 1"
)


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
        remove_container(container_id)


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
    exit_code, output = exec_simple(
        container_id, ["sh", "-c", _WAIT_FOR_INNER_DOCKER.format(tries=tries)]
    )
    if exit_code != 0:
        raise NodeStartError(
            f"the node's Docker engine did not answer within {timeout:.0f} s"
            + (f": {output.strip()[-300:]}" if output.strip() else "")
        )


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
        container_id = create_container(
            image,
            name or random_name(role),
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
        remove_container(container_id)
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
        raise NodeGone() from exc
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
        code, output = exec_simple(container_id, ["sh", "-c", _RENAME_HOST, "sh", hostname])
    except NotFound as exc:
        raise NodeGone() from exc
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
        raise NodeGone() from exc
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
        raise NodeGone() from exc
    except APIError as exc:
        raise EngineError(f"could not attach the node: {exc.explanation or exc}") from exc
    guard_gateway()
    return _container_ip(attrs, network)[0]


def rename_container(container_id: str, name: str) -> str:
    """Give a container the engine name ``name`` (or a suffixed name, see
    :func:`under_free_name`); returns the name given. Instant, and nothing inside the
    container notices. Rename before connecting to an overlay network: a renamed
    container's endpoint clashes with its old one in the swarm's table (seen on 20.10).
    Raises EngineError when the container is gone or the engine refuses."""

    def rename(candidate: str) -> str:
        client().api.rename(container_id, candidate)
        return candidate

    try:
        return under_free_name(name, rename)
    except NotFound as exc:
        raise NodeGone() from exc
    except APIError as exc:
        raise EngineError(f"could not rename the node: {exc.explanation or exc}") from exc
