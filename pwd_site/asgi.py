"""ASGI entry point: HTTP through Django, websockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pwd_site.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from pwd_site.bodylimit import BodyLimit  # noqa: E402
from pwd_site.portproxy import PortRouter  # noqa: E402
from pwd_site.routing import websocket_application  # noqa: E402
from sessions_app import isolation  # noqa: E402

# The node profile probe and the escape check take a few seconds, done now so that no
# trainee waits for them; in production an unsafe profile stops the process here.
isolation.enforce_at_start()

# Host names under PWD_PORTS_DOMAIN are port URLs: the proxy takes them before Django.
application = PortRouter(
    ProtocolTypeRouter(
        {
            "http": BodyLimit(django_asgi_app),
            "websocket": websocket_application,
        }
    )
)
