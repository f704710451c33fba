"""ASGI entry point (served by daphne): HTTP through Django, WebSocket through Channels' routing.

The WebSocket stack has no session or origin middleware on purpose: the chat consumer
authenticates with app keys and applies its own Origin policy (apps.conversations.consumers).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dify_platform.settings.base")
django_asgi_app = get_asgi_application()

# These need Django set up first.
from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from apps.conversations.routing import websocket_router  # noqa: E402

# The admin's CSS and JS: served by the platform itself unless a proxy in front serves the
# collected files (SERVE_STATIC=false, see deploy/); only paths under STATIC_URL are intercepted.
http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.SERVE_STATIC else django_asgi_app

application = ProtocolTypeRouter({"http": http_app, "websocket": websocket_router})
