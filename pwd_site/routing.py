"""Websocket routes. Origin checks are part of each consumer's connect."""

from channels.routing import URLRouter

websocket_urlpatterns: list = []

websocket_application = URLRouter(websocket_urlpatterns)
