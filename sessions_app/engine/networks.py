"""Session networks (attachable overlays) and the gateway bridge every session shares."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from django.conf import settings
from docker.errors import APIError, DockerException, NotFound

from sessions_app.engine import ROLE_NETWORK, EngineError, EngineUnavailable, client, labels

# Seconds to keep trying to remove a network whose endpoints are still going away (a
# swarm under load was seen to hold a task on it for more than ten).
NETWORK_REMOVE_PATIENCE = 30.0


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
