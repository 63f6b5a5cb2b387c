"""Websocket routes of the terminals app."""

websocket_urlpatterns: list = []
