"""Port URLs: the host name ``<token>-<node>-<port>.<PWD_PORTS_DOMAIN>`` and what it reaches.

Play with Docker's form, ``<token>-<node>-<port>.direct.<site host>`` (its SDK builds it
from an instance's ``proxy_host``, docs/compat.md), names the same port when the site
host is the ports domain or one of ALLOWED_HOSTS.

A host name is looked up, never trusted: its token must be an active session's
``port_token``, its node a running node of that session, and the address is the one the
engine gives that node's container on docker_gwbridge. Nothing in the name can point the
proxy at another address: not the host's, not the app's, not another session's node.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.conf import settings
from django.http.request import validate_host

from sessions_app import engine
from sessions_app.engine import ports as node_ports
from sessions_app.models import PORT_TOKEN_LENGTH, Node, Session

# Lower case only: host names are case-insensitive, so the name is lowered first.
_LABEL = re.compile(
    rf"^(?P<token>[a-z0-9]{{{PORT_TOKEN_LENGTH}}})-(?P<node>node[1-9][0-9]{{0,2}})"
    r"-(?P<port>[1-9][0-9]{0,4})$"
)
# How long a looked-up route is reused. A node removed inside this window is still tried
# at its old address: its connection fails (the address is gone), and an address the
# engine gave a new node meanwhile is reused by docker only after others on a /16.
ROUTE_TTL = 1.0

_server_port = 0
_routes: dict[tuple[str, str], tuple[float, Route]] = {}


class PortNotFound(Exception):
    """No active session's running node answers to this host name."""


@dataclass(frozen=True)
class PortName:
    token: str
    node: str
    port: int


@dataclass(frozen=True)
class Route:
    """Where a port URL goes: a node's address on docker_gwbridge."""

    session_id: str
    node: str
    address: str


def domain_of(host: str) -> str:
    """The name in a Host header, lowered, without its port or a final dot."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0].rstrip(".") if ":" in host else host.rstrip(".")


DIRECT = ".direct."


def _label(domain: str) -> str | None:
    """The first label of a port URL's (lowered) domain, in either form; else None."""
    label, direct, site = domain.partition(DIRECT)
    known_site = site == settings.PWD_PORTS_DOMAIN or validate_host(site, settings.ALLOWED_HOSTS)
    if direct and label and "." not in label and known_site:
        return label
    suffix = "." + settings.PWD_PORTS_DOMAIN
    return domain[: -len(suffix)] if domain.endswith(suffix) else None


def is_port_host(host: str | None) -> bool:
    """Whether a Host header names something under PWD_PORTS_DOMAIN (the proxy's), or
    PWD's ``.direct.`` form of it."""
    return bool(host) and _label(domain_of(host)) is not None


def parse_host(host: str) -> PortName | None:
    """The token, node and port of a port URL's host name; None when it is not one."""
    _, colon, port = host.strip().partition(":")
    if colon and not port.isdigit():
        return None
    label = _label(domain_of(host))
    if label is None:
        return None
    found = _LABEL.match(label)
    if found is None or int(found["port"]) > 65535:
        return None
    return PortName(found["token"], found["node"], int(found["port"]))


def learn_server_port(port: int) -> None:
    """Remember the port this process serves on (from the ASGI scope, which a client
    cannot choose): port URLs use it unless PWD_PORTS_PORT says otherwise."""
    global _server_port
    _server_port = port


def port_url(token: str, node: str, port: int) -> str:
    """The URL a browser opens to reach ``port`` of ``node``."""
    scheme = settings.PWD_PORTS_SCHEME
    public = settings.PWD_PORTS_PORT or _server_port
    default = {"http": 80, "https": 443}[scheme]
    suffix = f":{public}" if public and public != default else ""
    return f"{scheme}://{token}-{node}-{port}.{settings.PWD_PORTS_DOMAIN}{suffix}/"


def port_list(token: str, node: str, ports: list[int]) -> list[dict[str, object]]:
    """The ``ports`` of a node's JSON."""
    return [{"port": port, "url": port_url(token, node, port)} for port in ports]


@database_sync_to_async
def _running_node(token: str, node: str) -> tuple[str, str] | None:
    found = (
        Node.objects.filter(
            session__in=Session.objects.active().filter(port_token=token),
            name=node,
            status=Node.Status.RUNNING,
        )
        .exclude(container_id="")
        .values_list("session_id", "container_id")
        .first()
    )
    return found


async def route(name: PortName) -> Route:
    """Where ``name`` goes. Raises PortNotFound when no active session's running node
    answers to it (a bad or foreign token, an unknown node, an ended session)."""
    key = (name.token, name.node)
    now = time.monotonic()
    cached = _routes.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    found = await _running_node(name.token, name.node)
    if found is None:
        raise PortNotFound()
    session_id, container_id = found
    try:
        address = await engine.run(node_ports.gateway_address, container_id)
    except engine.EngineError as exc:
        raise PortNotFound() from exc
    if not address:
        raise PortNotFound()
    result = Route(session_id, name.node, address)
    if len(_routes) > 4096:
        _routes.clear()
    _routes[key] = (now + ROUTE_TTL, result)
    return result


async def still_there(name: PortName) -> bool:
    """Whether ``name`` still has a route when its cached one failed to connect: the
    session may have ended or the node gone within the cache's second (then 404, not a
    closed port)."""
    _routes.pop((name.token, name.node), None)
    try:
        await route(name)
    except PortNotFound:
        return False
    return True


def forget_routes() -> None:
    """Drop every cached route (tests, and a node's end within this process)."""
    _routes.clear()
