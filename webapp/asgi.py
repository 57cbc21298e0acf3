"""ASGI entry point. Django is set up first so the consumers can import models."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402

from inference import lifespan  # noqa: E402
from inference.gateway.routing import http_urlpatterns, websocket_urlpatterns  # noqa: E402
from webapp.middleware import guard_query_encoding  # noqa: E402

application = ProtocolTypeRouter(
    {
        # The gateway's /v1 consumers answer first; everything else is ordinary Django.
        "http": URLRouter([*http_urlpatterns, re_path(r"", guard_query_encoding(django_asgi_app))]),
        # AuthMiddlewareStack gives the dashboard's chat socket the browser's logged-in user.
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        # Shutdown writes the metrics still in memory (serve with `--lifespan on`).
        "lifespan": lifespan.application,
    }
)
