"""ASGI entry point: HTTP through Django, websockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pwd_site.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from pwd_site.bodylimit import BodyLimit  # noqa: E402
from pwd_site.routing import websocket_application  # noqa: E402
from sessions_app import provisioning  # noqa: E402

# The node profile probe takes a few seconds; done now, no trainee waits for it.
provisioning.detect_profile_in_background()

application = ProtocolTypeRouter(
    {
        "http": BodyLimit(django_asgi_app),
        "websocket": websocket_application,
    }
)
