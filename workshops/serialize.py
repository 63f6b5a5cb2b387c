"""The JSON shapes of workshops and seats (the API and the wall's stream)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from sessions_app.models import Node, Session
from sessions_app.serialize import timestamp
from workshops.models import Seat, Workshop


def seat_data(seat: Seat, nodes: list[Node], now: Any = None) -> dict[str, Any]:
    now = now or timezone.now()
    session: Session | None = seat.session
    active = session is not None and session.ended_at is None
    return {
        "number": seat.number,
        "status": seat.shown_status,
        "trainee_name": seat.trainee_name,
        "nodes": [{"name": n.name, "hostname": n.hostname, "status": n.status} for n in nodes],
        "last_activity_at": timestamp(session.last_activity_at) if active else None,
        "time_left": max(0, int((session.expires_at - now).total_seconds())) if active else 0,
        "error": seat.error,
        "attempts": seat.attempts,
    }


def seats_of(workshop: Workshop) -> list[dict[str, Any]]:
    """Every seat with its nodes, in two queries whatever the seat count."""
    seats = list(workshop.seat_set.select_related("session"))
    session_ids = [s.session_id for s in seats if s.session_id]
    nodes: dict[str, list[Node]] = {}
    for node in Node.objects.filter(session_id__in=session_ids).order_by("name"):
        nodes.setdefault(node.session_id, []).append(node)
    now = timezone.now()
    return [seat_data(s, nodes.get(s.session_id or "", []), now) for s in seats]


def workshop_data(workshop: Workshop, request: HttpRequest) -> dict[str, Any]:
    return {
        "id": str(workshop.pk),
        "title": workshop.title,
        "join_code": workshop.join_code,
        "join_url": request.build_absolute_uri(workshop.join_path),
        "dashboard_url": request.build_absolute_uri(workshop.dashboard_path),
        "seats": seats_of(workshop),
        "nodes_per_seat": workshop.nodes_wanted,
        "template": workshop.template,
        "image": workshop.image,
        "starts_at": timestamp(workshop.starts_at) if workshop.starts_at else None,
        "ends_at": timestamp(workshop.ends_at),
        "ended": not workshop.is_running(),
        "message": workshop.message,
    }
