"""Websocket routes of the sessions app (the events stream)."""

websocket_urlpatterns: list = []
