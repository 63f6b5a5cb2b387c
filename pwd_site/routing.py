"""Websocket routes of every app, behind the Origin check."""

from channels.routing import URLRouter

from metrics.sockets import CountOpenSockets
from pwd_compat.routing import websocket_urlpatterns as compat_patterns
from pwd_site.origin import OriginCheck
from sessions_app.routing import websocket_urlpatterns as session_patterns
from terminals.routing import websocket_urlpatterns as terminal_patterns
from workshops.routing import websocket_urlpatterns as workshop_patterns

# PWD's socket (/sessions/<id>/ws/) is opened by documentation pages: PWD_EMBED_ORIGINS.
websocket_application = CountOpenSockets(
    OriginCheck(
        URLRouter(
            [
                *session_patterns,
                *terminal_patterns,
                *compat_patterns,
                *workshop_patterns,
            ]
        ),
        embed_prefixes=("/sessions/",),
    )
)
