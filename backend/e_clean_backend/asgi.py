"""The web process: HTTP through Django and the notifications WebSocket.

    daphne -b 0.0.0.0 -p 8000 e_clean_backend.asgi:application   (from backend/)

The socket is for logged-in users on our own hosts only:
``AllowedHostsOriginValidator`` refuses a handshake whose ``Origin`` is not in
``ALLOWED_HOSTS`` (another site's page cannot ride the user's cookie), and
``AuthMiddlewareStack`` reads the session cookie.

At import, before serving anything: a bad setting is one line and exit 2,
credentials Redis refuses are one line naming REDIS_PASSWORD and exit 3 (as
the bridge and worker do), instead of a server whose sockets never receive.
"""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "e_clean_backend.settings")

from django.core.exceptions import ImproperlyConfigured  # noqa: E402

from workers.preflight import CredentialsRefused  # noqa: E402  (before the try: its except clause names it)

try:
    from django.core.asgi import get_asgi_application

    # Sets Django up; the imports below need the app registry.
    django_application = get_asgi_application()

    from core import realtime  # noqa: E402

    realtime.check_channel_layer()
    realtime.quiet_redis_loss()
except ImproperlyConfigured as exc:
    print(f"web: configuration error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None
except CredentialsRefused as exc:
    print(f"web: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(3) from None

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from core.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
