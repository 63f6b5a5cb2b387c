"""Websocket routes of the workshops app. Their consumers know the instructor from the
login session's cookie (AuthMiddlewareStack); no other socket pays for that lookup."""

from channels.auth import AuthMiddlewareStack
from django.urls import path

from workshops.consumers import SeatTerminalConsumer, WallConsumer

websocket_urlpatterns = [
    path(
        "ws/workshops/<uuid:workshop_id>/wall/",
        AuthMiddlewareStack(WallConsumer.as_asgi()),
    ),
    path(
        "ws/workshops/<uuid:workshop_id>/seats/<int:number>/nodes/<str:node>/terminal/",
        AuthMiddlewareStack(SeatTerminalConsumer.as_asgi()),
    ),
]
