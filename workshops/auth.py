"""Who is an instructor: a logged-in user (the dashboard, with CSRF on changes) or a
script's ``Authorization: Token <token>``, holding the ``workshops.instruct`` permission.

The API answers 401 ``not_authenticated`` without credentials or with a bad token, 403
``not_instructor`` for a user without the permission; a workshop the instructor does not
run is 404, as if it did not exist.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.utils import timezone
from ninja.utils import check_csrf

from sessions_app.errors import ApiError
from workshops.models import INSTRUCT, ApiToken, hash_secret

TOKEN_PREFIX = "Token "
MAX_TOKEN_LENGTH = 128


class NotAuthenticated(ApiError):
    status = 401
    code = "not_authenticated"


class NotInstructor(ApiError):
    status = 403
    code = "not_instructor"


def _user_of_token(token: str) -> Any:
    row = ApiToken.objects.select_related("user").filter(key_hash=hash_secret(token)).first()
    if row is None or not row.user.is_active:
        return None
    now = timezone.now()
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
    return row.user


def _authenticate(request: HttpRequest, user: Any) -> Any:
    header = request.headers.get("Authorization", "")
    if header:
        token = header[len(TOKEN_PREFIX) :].strip() if header.startswith(TOKEN_PREFIX) else ""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise NotAuthenticated('The Authorization header must be "Token <token>".')
        found = _user_of_token(token)
        if found is None:
            raise NotAuthenticated("That token is not valid (it may have been revoked).")
        return found
    if user is None or not user.is_authenticated:
        raise NotAuthenticated(
            "Log in at /accounts/login/, or send Authorization: Token <token> "
            "(python manage.py instructor <name> prints one)."
        )
    if request.method not in ("GET", "HEAD", "OPTIONS") and check_csrf(request) is not None:
        raise NotInstructor("CSRF verification failed; reload the page.", "csrf_failed")
    return user


def _check_instructor(user: Any) -> None:
    if not user.has_perm(INSTRUCT):
        raise NotInstructor("Only instructors may do this; ask an operator for the permission.")


async def instructor(request: HttpRequest) -> Any:
    """The instructor making the request; NotAuthenticated or NotInstructor otherwise."""
    user = await request.auser() if hasattr(request, "auser") else AnonymousUser()
    found = await sync_to_async(_authenticate)(request, user)
    await sync_to_async(_check_instructor)(found)
    return found


def is_instructor(user: Any) -> bool:
    """For pages and websockets (sync): an active user holding the permission."""
    return bool(user and user.is_authenticated and user.is_active and user.has_perm(INSTRUCT))
