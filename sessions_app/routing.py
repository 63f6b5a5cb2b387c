"""Websocket routes of the sessions app (the events stream)."""

from django.urls import re_path

from sessions_app.consumers import EventsConsumer

# Session ids are URL-safe base64; the pattern also keeps channel-layer group names valid.
websocket_urlpatterns: list = [
    re_path(r"^ws/sessions/(?P<session_id>[A-Za-z0-9_-]{1,64})/events/$", EventsConsumer.as_asgi()),
]
