"""What this instance has on the engine, listed and removed by labels (the reaper's view)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from docker.errors import APIError, DockerException, NotFound

from sessions_app.engine import (
    LABEL_SESSION,
    EngineError,
    EngineUnavailable,
    client,
    instance_filter,
    remove_container,
)
from sessions_app.engine.networks import network_name, remove_network


@dataclass
class EngineObjects:
    """Labelled objects of this pwd instance, as the engine lists them."""

    containers: list[dict[str, Any]]
    networks: list[dict[str, Any]]
    volumes: list[dict[str, Any]]


def list_objects() -> EngineObjects:
    """Every labelled container, network and volume of this instance."""
    api = client().api
    try:
        containers = api.containers(all=True, filters=instance_filter())
        networks = api.networks(filters=instance_filter())
        volumes = api.volumes(filters=instance_filter()).get("Volumes") or []
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
    wanted = instance_filter(**{LABEL_SESSION: session_id})
    on_network = {**instance_filter(), "network": [network_name(session_id)]}
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
            remove_container(container["Id"])
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
