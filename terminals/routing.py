"""Websocket routes of the terminals app."""

from django.urls import path

from terminals.consumers import TerminalConsumer

websocket_urlpatterns = [
    path(
        "ws/sessions/<str:session_id>/nodes/<str:node>/terminal/",
        TerminalConsumer.as_asgi(),
        name="terminal",
    ),
]
