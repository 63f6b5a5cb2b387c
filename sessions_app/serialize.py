"""The JSON shapes of sessions and nodes, shared by the API views and the events."""

from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from sessions_app import ports, portwatch
from sessions_app.models import Node, Session

_encoder = DjangoJSONEncoder()


def timestamp(value: datetime) -> str:
    """A time as the API writes it: ISO 8601, UTC, milliseconds, ``Z``."""
    return _encoder.default(value)


def node_data(node: Node) -> dict[str, Any]:
    return {
        "name": node.name,
        "hostname": node.hostname,
        "ip": node.ip,
        "status": node.status,
        "created_at": _encoder.default(node.created_at),
        "ports": _ports(node),
        "terminal": node.terminal_path,
    }


def _ports(node: Node) -> list[dict[str, Any]]:
    """The node's open ports as last seen (see portwatch.with_ports), with their URLs.
    The session comes with the node wherever a node is serialised (loaded with it)."""
    if not node.container_id or not Node.session.is_cached(node):
        return []
    found = portwatch.known_ports(node.container_id)
    return ports.port_list(node.session.port_token, node.name, found)


def session_data(session: Session, nodes: list[Node]) -> dict[str, Any]:
    return {
        "id": session.id,
        "url": session.page_path,
        "created_at": _encoder.default(session.created_at),
        "expires_at": _encoder.default(session.expires_at),
        "hard_expires_at": _encoder.default(session.hard_expires_at),
        "max_nodes": session.max_nodes,
        "nodes": [node_data(node) for node in nodes],
    }
