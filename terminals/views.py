"""The session page: the side panel of nodes and the terminals of the selected one."""

from datetime import timedelta

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from pwd_site.views import limits
from sessions_app.models import Node, Session


@ensure_csrf_cookie
def session_page(request: HttpRequest, session_id: str) -> HttpResponse:
    """The page of an active session; 404 for one unknown or ended."""
    session = Session.objects.filter(pk=session_id).first()
    if session is None or not session.is_active():
        raise Http404("no such session, or it has ended")
    nodes = [
        {"name": n.name, "hostname": n.hostname, "ip": n.ip, "status": n.status}
        for n in session.nodes.exclude(status=Node.Status.GONE)
    ]
    return render(
        request,
        "terminals/session.html",
        {
            "session": session,
            "limits": limits(),
            "initial": {
                "id": session.id,
                "expires_at": session.expires_at.isoformat(),
                # The page counts down itself; typing pushes the idle limit back.
                "lifetime_ends_at": (
                    session.created_at + timedelta(seconds=settings.PWD_SESSION_LIFETIME)
                ).isoformat(),
                "idle_timeout": settings.PWD_IDLE_TIMEOUT,
                "warning_seconds": settings.PWD_EXPIRY_WARNING,
                "max_nodes": session.max_nodes,
                "nodes": nodes,
            },
        },
    )
