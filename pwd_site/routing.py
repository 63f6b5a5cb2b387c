"""Websocket routes of every app, behind the Origin check."""

from channels.routing import URLRouter

from pwd_site.origin import OriginCheck
from sessions_app.routing import websocket_urlpatterns as session_patterns
from terminals.routing import websocket_urlpatterns as terminal_patterns

websocket_application = OriginCheck(URLRouter(session_patterns + terminal_patterns))
