"""PWD's setup plan, ``{"instances": [{is_swarm_manager, is_swarm_worker, run, ...}]}``,
as the native plan (sessions_app.schemas_setup.SetupRequest), which checks it."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from sessions_app import services, setup
from sessions_app.errors import BadRequest
from sessions_app.schemas_setup import SetupRequest


def _role(entry: dict[str, Any]) -> str:
    manager, worker = entry.get("is_swarm_manager", False), entry.get("is_swarm_worker", False)
    if not isinstance(manager, bool) or not isinstance(worker, bool):
        raise BadRequest(
            "is_swarm_manager and is_swarm_worker must be booleans.", "invalid_request"
        )
    if manager and worker:
        raise BadRequest("An instance is a swarm manager or a worker, not both.", "invalid_request")
    return setup.MANAGER if manager else setup.WORKER if worker else setup.NO_ROLE


def parse(body: dict[str, Any] | None) -> list[setup.PlannedNode]:
    """The nodes to make; BadRequest for anything PWD's plan shape does not allow, a
    TLS node, a Windows one or an image that is not PWD_NODE_IMAGE."""
    entries = body.get("instances") if body is not None else None
    if (
        not isinstance(entries, list)
        or not entries
        or not all(isinstance(e, dict) for e in entries)
    ):
        raise BadRequest('The body must be {"instances": [...]}, at least one.', "invalid_request")
    nodes = []
    for raw in entries:
        entry = {str(key).lower(): value for key, value in raw.items()}
        if entry.get("tls"):
            raise BadRequest("TLS instances are not supported here.", "invalid_request")
        if entry.get("type") not in (None, "", "linux"):
            raise BadRequest("Only linux instances are supported here.", "invalid_request")
        # The setup starts PWD_NODE_IMAGE; another image is refused rather than ignored.
        if entry.get("image") and services.allowed_image(entry["image"]) != services.allowed_image(
            None
        ):
            raise BadRequest("A setup starts the default image only.", "bad_image")
        nodes.append({"role": _role(entry), "run": entry.get("run") or []})
    try:
        return SetupRequest.model_validate({"nodes": nodes}).plan()
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        raise BadRequest(
            f"The plan does not fit: {first.get('msg', 'invalid')}.", "invalid_request"
        ) from None
