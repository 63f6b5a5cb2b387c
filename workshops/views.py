"""The workshop pages: the instructor's dashboard and wall, the trainee's join page.

The pages only render; every change goes through the JSON API (workshops.api) from the
pages' scripts, with the CSRF token rendered into the page (the cookie is HttpOnly).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from sessions_app.errors import NotFound
from sessions_app.setup import TEMPLATES
from workshops import services
from workshops.api import COOKIE_PREFIX
from workshops.auth import is_instructor
from workshops.models import Seat, Workshop, hash_secret
from workshops.serialize import seats_of

NO_SUCH_WORKSHOP = "No such workshop: check the code or the link with your instructor."


def _forbidden(request: HttpRequest) -> HttpResponse:
    return render(request, "workshops/forbidden.html", status=403)


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """The instructor's workshops and the form that creates one."""
    if not is_instructor(request.user):
        return _forbidden(request)
    now = timezone.now()
    workshops = list(Workshop.objects.of_instructor(request.user)[:200])
    context = {
        "running": [w for w in workshops if w.is_running(now)],
        "past": [w for w in workshops if not w.is_running(now)],
        "images": settings.PWD_NODE_IMAGES,
        "default_image": settings.PWD_NODE_IMAGE,
        "templates": [(name, len(roles)) for name, roles in TEMPLATES.items()],
        "max_seats": settings.PWD_WORKSHOP_MAX_SEATS,
        "max_nodes": settings.PWD_MAX_NODES,
    }
    return render(request, "workshops/dashboard.html", context)


@login_required
def wall(request: HttpRequest, workshop_id: Any) -> HttpResponse:
    """The classroom wall of a workshop the user instructs; 404 for any other."""
    if not is_instructor(request.user):
        return _forbidden(request)
    try:
        workshop = services.run_by(request.user, workshop_id)
    except NotFound as exc:
        raise Http404(exc.message) from None
    initial = {
        "id": str(workshop.pk),
        "title": workshop.title,
        "join_code": workshop.join_code,
        "join_url": request.build_absolute_uri(workshop.join_path),
        "ends_at": workshop.ends_at.isoformat(),
        "running": workshop.is_running(),
        "message": workshop.message,
        "seats": seats_of(workshop),
        # When the provisioner starts on the seats (None: from creation).
        "prepare_from": (
            (
                workshop.starts_at - timedelta(seconds=settings.PWD_WORKSHOP_PREPARE_BEFORE)
            ).isoformat()
            if workshop.starts_at
            else None
        ),
    }
    context = {"workshop": workshop, "initial": initial, "join_url": initial["join_url"]}
    return render(request, "workshops/wall.html", context)


def join(request: HttpRequest, code: str) -> HttpResponse:
    """The join page of a code: a name and Join; Rejoin when this browser has a seat.
    404 for an unknown code, 410 with the page saying so for an ended workshop."""
    try:
        workshop = services.find_by_code(code[:32])
    except NotFound:
        raise Http404(NO_SUCH_WORKSHOP) from None
    except services.WorkshopEnded:
        found = Workshop.objects.filter(join_code=code[:32].strip().upper()).first()
        context = {"workshop": found, "ended": True}
        return render(request, "workshops/join.html", context, status=410)
    context = {"workshop": workshop, "ended": False, "mine": _seat_of_browser(request, workshop)}
    return render(request, "workshops/join.html", context)


def _seat_of_browser(request: HttpRequest, workshop: Workshop) -> Seat | None:
    """The seat this browser's cookie holds, while its session lasts."""
    key = request.COOKIES.get(COOKIE_PREFIX + workshop.pk.hex)
    if not key:
        return None
    seat = (
        Seat.objects.filter(workshop=workshop, trainee_key=hash_secret(key))
        .select_related("session")
        .first()
    )
    if seat is None or seat.session is None or not seat.session.is_active():
        return None
    return seat
