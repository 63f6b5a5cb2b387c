"""PWD's shapes: Go durations, the session and instance JSON, bodies with a newline.

An instance's ``name`` is the node's name (``node1``...): unique in its session, and
what every native route already takes. ``proxy_host`` is ``<port token>-<node>``, so a
port link ``<proxy_host>-<port>.direct.<host>`` carries no session id (sessions_app.ports).
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

from django.http import HttpResponse

from sessions_app.models import Node, Session
from sessions_app.serialize import timestamp

_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def go_duration(text: str) -> timedelta | None:
    """A Go ``time.ParseDuration`` string (``90m``, ``1h30m``, ``2h``) as a timedelta;
    None when it is not one. A negative duration is not one here."""
    text = text.strip()
    if text.startswith("+"):
        text = text[1:]
    if text == "0":
        return timedelta(0)
    if not text or len(text) > 64:
        return None
    seconds, at = 0.0, 0
    while at < len(text):
        part = _GO_PART.match(text, at)
        if part is None:
            return None
        seconds += float(part[1]) * _GO_UNITS[part[2]]
        at = part.end()
    return timedelta(seconds=seconds)


def json_response(data: Any, status: int = 200) -> HttpResponse:
    """JSON as PWD writes it: compact-ish, with a trailing newline."""
    return HttpResponse(json.dumps(data) + "\n", status=status, content_type="application/json")


def empty(status: int = 200) -> HttpResponse:
    return HttpResponse(b"", status=status)


def proxy_host(session: Session, node: Node) -> str:
    return f"{session.port_token}-{node.name}"


def instance_data(session: Session, node: Node, host: str) -> dict[str, Any]:
    """An Instance as PWD serialises it; the certificates are null (no TLS nodes)."""
    return {
        "name": node.name,
        "image": node.image,
        "hostname": node.hostname,
        "ip": node.ip or "",
        "routable_ip": node.ip or "",
        "server_cert": None,
        "server_key": None,
        "ca_cert": None,
        "cert": None,
        "key": None,
        "tls": False,
        "session_id": session.id,
        "proxy_host": proxy_host(session, node),
        "session_host": host,
        "type": "linux",
    }


def session_json(session: Session, nodes: list[Node], host: str) -> dict[str, Any]:
    return {
        "id": session.id,
        "created_at": timestamp(session.created_at),
        "expires_at": timestamp(session.expires_at),
        "pwd_ip_address": "",
        "ready": True,
        "stack": "",
        "stack_name": "",
        "image_name": "",
        "host": host,
        "user_id": "",
        "playground_id": "",
        "instances": {node.name: instance_data(session, node, host) for node in nodes},
    }


def lower_keys(body: bytes) -> dict[str, Any] | None:
    """A JSON object with its keys lowered (PWD decodes them case-insensitively); None
    when the body is not a JSON object. A blank body is ``{}``."""
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    return {str(key).lower(): value for key, value in data.items()}
