"""PWD's websocket, ``/sessions/<id>/ws/`` (the trailing slash is part of it)."""

from django.urls import re_path

from pwd_compat.consumers import CompatConsumer

# The id pattern also keeps the channel-layer group names valid.
websocket_urlpatterns: list = [
    re_path(r"^sessions/(?P<session_id>[A-Za-z0-9_-]{1,64})/ws/$", CompatConsumer.as_asgi()),
]
