"""``{% workshop_notices session %}`` on the session page: for a workshop seat, the
workshop's title, its current message and the notices script; nothing otherwise."""

from typing import Any

from django import template

from sessions_app.models import Session
from workshops.models import Seat

register = template.Library()


@register.inclusion_tag("workshops/notices.html")
def workshop_notices(session: Session) -> dict[str, Any]:
    seat = Seat.objects.filter(session=session).select_related("workshop").first()
    if seat is None:
        return {"seat": None}
    workshop = seat.workshop
    data = {
        "title": workshop.title,
        "message": workshop.message,
        "ends_at": workshop.ends_at.isoformat(),
        "seat": seat.number,
    }
    return {"seat": seat, "workshop": workshop, "notices": data}
