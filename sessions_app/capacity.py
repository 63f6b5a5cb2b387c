"""How much more this installation can run: the hosts, their nodes, and seats that fit.

Three things bound it: PWD_MAX_TOTAL_NODES (counted with quotas.nodes_in_use, the count
the add path checks), PWD_MAX_SESSIONS (active sessions), and each host's memory, which
holds as many more nodes as its available memory has PWD_NODE_MEMORY for: a node may use
up to its limit, so no seat is promised memory its nodes might not get. Everything is
sync (call it in a thread, or through sync_to_async).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Count, QuerySet

from sessions_app import engine, quotas
from sessions_app.models import Node, PoolNode, Session


@dataclass(frozen=True)
class Host:
    name: str
    nodes: int
    pool_nodes: int
    memory_total: int
    memory_available: int | None
    # More nodes of PWD_NODE_MEMORY its memory holds now.
    nodes_that_fit: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "nodes": self.nodes,
            "pool_nodes": self.pool_nodes,
            "memory_total": self.memory_total,
            "memory_available": self.memory_available,
            "nodes_that_fit": self.nodes_that_fit,
        }


@dataclass(frozen=True)
class Room:
    """What is left: nodes (under the cap and in the hosts' memory) and sessions."""

    hosts: list[Host]
    nodes_used: int
    nodes_free: int
    sessions_active: int
    sessions_free: int
    bound: str  # what limits nodes_free: "nodes" (the cap) or "memory"

    def seats(
        self, nodes_per_seat: int, reserved_nodes: int = 0, reserved_sessions: int = 0
    ) -> int:
        if nodes_per_seat < 1:
            raise ValueError("nodes_per_seat must be 1 or more")
        if nodes_per_seat > settings.PWD_MAX_NODES:
            return 0
        by_nodes = max(0, self.nodes_free - reserved_nodes) // nodes_per_seat
        return max(0, min(by_nodes, self.sessions_free - reserved_sessions))


def by_status(rows: QuerySet) -> dict[str, int]:
    """How many of ``rows`` (nodes or pool nodes) are in each status they have."""
    return dict(rows.values_list("status").annotate(count=Count("id")).order_by())


def _local_host(nodes: int, pool_nodes: int) -> Host:
    memory = engine.host_memory()
    per_node = settings.PWD_NODE_MEMORY
    if memory.available is not None:
        fit = memory.available // per_node
    else:
        # A remote engine: only its total is known, so every node (and pool node) is
        # charged its whole limit.
        fit = max(0, memory.total // per_node - nodes - pool_nodes)
    return Host(engine.LOCAL_HOST, nodes, pool_nodes, memory.total, memory.available, fit)


def room() -> Room:
    """The installation's room now. Raises engine.EngineUnavailable when the engine does
    not answer (its memory is one of the bounds)."""
    used = quotas.nodes_in_use()
    # A taken pool node is a node now, counted among those in use.
    pool_nodes = PoolNode.objects.exclude(status=PoolNode.Status.TAKEN).count()
    hosts = [_local_host(used, pool_nodes)]
    by_cap = max(0, settings.PWD_MAX_TOTAL_NODES - used)
    by_memory = sum(host.nodes_that_fit for host in hosts)
    active = Session.objects.active().count()
    return Room(
        hosts=hosts,
        nodes_used=used,
        nodes_free=min(by_cap, by_memory),
        sessions_active=active,
        sessions_free=max(0, settings.PWD_MAX_SESSIONS - active),
        bound="memory" if by_memory < by_cap else "nodes",
    )


def seats_that_fit(nodes_per_seat: int, reserved_nodes: int = 0, reserved_sessions: int = 0) -> int:
    """How many more seats of ``nodes_per_seat`` nodes (each a session) this
    installation can start now, after ``reserved_nodes`` nodes and ``reserved_sessions``
    sessions already promised to seats not made yet. 0 when ``nodes_per_seat`` passes
    PWD_MAX_NODES (no session may have that many). Raises ValueError when
    ``nodes_per_seat`` is below 1, engine.EngineUnavailable when the engine does not
    answer."""
    return room().seats(nodes_per_seat, reserved_nodes, reserved_sessions)


def snapshot(nodes_per_seat: int = 1) -> dict[str, Any]:
    """What GET /api/capacity/ answers (docs/api.md): hosts, nodes used and free,
    sessions, and the seats of ``nodes_per_seat`` nodes that fit."""
    now = room()
    nodes_by_status = by_status(Node.objects.exclude(status=Node.Status.GONE))
    return {
        "hosts": [host.as_dict() for host in now.hosts],
        "nodes": {
            "used": now.nodes_used,
            "free": now.nodes_free,
            "limit": settings.PWD_MAX_TOTAL_NODES,
            "node_memory": settings.PWD_NODE_MEMORY,
            "by_status": nodes_by_status,
            "bound": now.bound,
        },
        "sessions": {
            "active": now.sessions_active,
            "free": now.sessions_free,
            "limit": settings.PWD_MAX_SESSIONS,
        },
        "seats": {"nodes_per_seat": nodes_per_seat, "fit": now.seats(nodes_per_seat)},
    }
