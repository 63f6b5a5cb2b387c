"""What the engine holds labelled with one ``PWD_INSTANCE``, listed or removed.

Run as ``python -m pwd_site.instance_objects list|remove``: it acts on the
``PWD_INSTANCE`` (and the engine, ``DOCKER_HOST``) of its environment and prints the
objects as JSON (for ``remove``, what is still there afterwards). It is the clean-up of
:mod:`pwd_site.testing`, a process of its own so that it sees what the live server saw;
it goes through the engine package like the reaper does.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

# Removal passes over what is left: a swarm removes an overlay network asynchronously.
REMOVE_PASSES = 5


@dataclass
class InstanceObjects:
    """Containers, networks and volumes labelled with one instance, as the engine lists them."""

    containers: list[dict[str, Any]] = field(default_factory=list)
    networks: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.containers or self.networks or self.volumes)

    def names(self, session_id: str | None = None) -> list[str]:
        """Names (or ids) of the objects, or of those labelled with ``session_id``."""
        return [
            (obj.get("Names") or [obj.get("Name") or obj.get("Id")])[0]
            for obj in self.containers + self.networks + self.volumes
            if session_id is None or (obj.get("Labels") or {}).get("pwd.session") == session_id
        ]


def _listed() -> dict[str, list[dict[str, Any]]]:
    from sessions_app import engine

    objects = engine.list_objects()
    return {
        "containers": objects.containers,
        "networks": objects.networks,
        "volumes": objects.volumes,
    }


def _remove_all() -> dict[str, list[dict[str, Any]]]:
    """Remove everything of the instance the way the reaper does; returns what is left."""
    from sessions_app import disks, engine

    for attempt in range(REMOVE_PASSES):
        objects = engine.list_objects()
        labelled = objects.containers + objects.networks + objects.volumes
        if not labelled:
            break
        if attempt:
            time.sleep(1)
        # A session's objects go in their order (containers, volumes, then its network,
        # waited for); pool and probe containers have no session.
        sessions = {(o.get("Labels") or {}).get(engine.LABEL_SESSION) for o in labelled}
        for session_id in sessions - {None}:
            with contextlib.suppress(engine.EngineError):
                engine.remove_session_objects(session_id)
        for container in engine.list_objects().containers:
            with contextlib.suppress(engine.EngineError):
                engine.remove_node(container["Id"])
        for volume in engine.list_objects().volumes:
            with contextlib.suppress(engine.EngineError):
                engine.remove_volume(volume["Name"])
        for network in engine.list_objects().networks:
            with contextlib.suppress(engine.EngineError):
                engine.remove_network(network["Id"])
    # Disks of nodes that died before their container was made (or removed from outside).
    with contextlib.suppress(engine.EngineError, disks.DiskError, OSError):
        engine.remove_unused_disks()
    return _listed()


def main(argv: list[str]) -> int:
    if argv not in (["list"], ["remove"]):
        print("usage: python -m pwd_site.instance_objects list|remove", file=sys.stderr)
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pwd_site.settings")
    # The engine package needs settings only, not the app registry: no django.setup().
    from sessions_app import engine

    try:
        print(json.dumps(_listed() if argv == ["list"] else _remove_all()))
    except engine.EngineUnavailable as exc:
        print(f"the engine does not answer: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
