"""ASGI entry point (served by daphne): HTTP through Django, WebSocket through Channels' routing.

The WebSocket stack has no session or origin middleware on purpose: the chat consumer
authenticates with app keys and applies its own Origin policy (apps.conversations.consumers).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dify_platform.settings.base")
django_asgi_app = get_asgi_application()

# Both need Django set up first.
from channels.routing import ProtocolTypeRouter  # noqa: E402

from apps.conversations.routing import websocket_router  # noqa: E402

application = ProtocolTypeRouter({"http": django_asgi_app, "websocket": websocket_router})
